"""The suite's rule that under CI=true nothing passes by skipping (tests/conftest.py's hooks),
tried on a small suite of its own: a test that skips and a module that skips as it is
collected both fail under CI, naming the reason; elsewhere they skip."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from conftest import TESTS

SMALL_SUITE = {
    "test_runs.py": "def test_passes():\n    assert True\n",
    "test_skips_a_test.py": (
        "import pytest\n\n\ndef test_needs_a_tool():\n"
        "    pytest.skip('the tool frobnicate is missing')\n"
    ),
    "test_skips_its_module.py": (
        "import pytest\n\npytest.skip('the service quux is down', allow_module_level=True)\n\n\n"
        "def test_never_collected():\n    assert True\n"
    ),
    "test_skips_by_import.py": (
        "import pytest\n\npytest.importorskip('no_such_module_here')\n\n\n"
        "def test_never_collected():\n    assert True\n"
    ),
}


def run_small_suite(tmp_path, ci: bool) -> subprocess.CompletedProcess[str]:
    for name, text in SMALL_SUITE.items():
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q",
         "-rfEs", "--continue-on-collection-errors", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_under_ci_a_skip_at_run_or_collection_time_fails_naming_its_reason(tmp_path):
    done = run_small_suite(tmp_path, ci=True)
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert re.search(r"\b1 failed, 1 passed, 2 errors\b", out), out
    assert "CI=true, and the test skipped: the tool frobnicate is missing" in out, out
    assert "CI=true, and the module skipped: the service quux is down" in out, out
    assert "CI=true, and the module skipped: could not import 'no_such_module_here'" in out, out


def test_elsewhere_a_skip_stays_a_skip(tmp_path):
    done = run_small_suite(tmp_path, ci=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b1 passed, 3 skipped\b", done.stdout), done.stdout


GROUPS_PLUGIN = """
import json

def pytest_collection_finish(session):
    groups = {}
    for item in session.items:
        marker = item.get_closest_marker("xdist_group")
        groups[item.nodeid] = marker.args[0] if marker else None
    print("GROUPS " + json.dumps(groups))
"""


def test_xdist_groups_join_the_tests_that_share_a_fixture_instance(tmp_path):
    """`make test`'s groups (conftest's pytest_collection_modifyitems), on this suite: a
    session fixture (the retrained project) joins every module that uses it; a module
    fixture joins its module's tests only, wherever it is defined (conftest's `browser`, one in
    test_browser and another in test_explore, does not join the two; test_cluster's own
    `stack` overrides the session's and does not join test_stack)."""
    (tmp_path / "print_groups.py").write_text(GROUPS_PLUGIN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(TESTS)])}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", "-p", "xdist",
         "-p", "print_groups", str(TESTS)],
        cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [line] = [x for x in done.stdout.splitlines() if x.startswith("GROUPS ")]
    groups = json.loads(line.removeprefix("GROUPS "))

    def of(module: str) -> set:
        return {g for test, g in groups.items() if test.startswith(f"tests/{module}::")}

    explore, browser = of("test_explore.py"), of("test_browser.py")
    assert len(explore) == 1 and None not in explore, explore
    assert len(browser) == 1 and None not in browser, browser
    assert explore != browser
    stack, cluster = of("test_stack.py"), of("test_cluster.py")
    assert len(stack) == 1 and len(cluster) == 1 and stack != cluster, (stack, cluster)
    trained = {g for test, g in groups.items() if "@" not in test and g and "retrained" in g}
    assert len(trained) == 1, trained  # the session's retrained project: one group
    assert None in of("test_params.py")  # a test that shares nothing goes to any worker
