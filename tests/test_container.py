"""The Dockerfile, built and run on a real Docker engine: the base image is a stand-in built
from Debian's packages (tools/base-image.sh), the project's image is built with the host's
network, and the tiny pipeline runs in it as a user the image does not know, without a
network, on a mounted clone."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PIPELINE, ROOT, TINY_RUN, commit, project_repo, ran_stages, write_params

pytestmark = pytest.mark.slow

IMAGE = "wardrobe:test"
CALLER = (4242, 4242)  # a uid and gid with no name on the host or in the image


def engine_answers() -> str | None:
    """None if a Docker engine answers, else why not."""
    if shutil.which("docker") is None:
        return "the docker client is missing (make test installs docker.io)"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    return None if info.returncode == 0 else (info.stderr.strip().splitlines() or ["?"])[-1]


@pytest.fixture(scope="module")
def engine() -> Iterator[None]:
    """A Docker engine: the running one, or dockerd started here (as root) and stopped after."""
    started = None
    if engine_answers() is not None and os.geteuid() == 0 and shutil.which("dockerd"):
        log = open(Path(tempfile.gettempdir()) / "wardrobe-dockerd.log", "w")  # noqa: SIM115
        started = subprocess.Popen(
            ["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        for _ in range(60):
            if engine_answers() is None or started.poll() is not None:
                break
            time.sleep(0.5)
    why = engine_answers()
    if why is not None:
        if started:
            started.terminate()
        pytest.skip(f"no Docker engine can start here ({why}); the container test needs one")
    yield
    if started:
        started.terminate()
        started.wait(timeout=60)


def timed(command: list[str], **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    return done, time.perf_counter() - start


@pytest.fixture(scope="module")
def image(engine, tmp_path_factory) -> Iterator[str]:
    """The project's image, built from a copy of the project on the stand-in base image."""
    base, seconds = timed(["bash", "tools/base-image.sh"], cwd=ROOT, timeout=900)
    assert base.returncode == 0, base.stdout + base.stderr
    print(f"{base.stdout.strip()} ({seconds:.0f} s)")
    context = project_repo(tmp_path_factory.mktemp("image") / "project")
    built, seconds = timed(
        ["docker", "build", "--network", "host", "-t", IMAGE, "."], cwd=context, timeout=1800
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    print(f"docker build: {seconds:.0f} s")
    yield IMAGE
    subprocess.run(["docker", "image", "rm", "-f", IMAGE], capture_output=True)


@pytest.fixture
def mounted_clone() -> Iterator[Path]:
    """A git clone of the project with tiny params, owned by CALLER, in a directory CALLER
    can reach (pytest's own are private to root)."""
    parent = Path(tempfile.mkdtemp(prefix="wardrobe-container-", dir="/var/tmp"))
    os.chmod(parent, 0o755)
    source = project_repo(parent / "source")
    clone = parent / "clone"
    subprocess.run(["git", "clone", "-q", str(source), str(clone)], check=True)
    write_params(clone, clone / "params.yaml", **TINY_RUN)
    commit(clone, "tiny-run params")
    subprocess.run(["chown", "-R", f"{CALLER[0]}:{CALLER[1]}", str(clone)], check=True)
    yield clone
    shutil.rmtree(parent, ignore_errors=True)


def in_container(image: str, clone: Path, *command: str, timeout: int = 900):
    """`docker run` as the Dockerfile's comment shows, as CALLER, without a network."""
    return timed(
        ["docker", "run", "--rm", "--network", "none", "-u", f"{CALLER[0]}:{CALLER[1]}",
         "-v", f"{clone}:{clone}", "-w", str(clone), image, *command],
        timeout=timeout,
    )  # fmt: skip


def test_the_image_runs_the_pipeline_as_the_calling_user_without_a_network(image, mounted_clone):
    clone = mounted_clone
    repro, seconds = in_container(image, clone)
    output = repro.stdout + repro.stderr
    assert repro.returncode == 0, output[-4000:]
    print(f"docker run (tiny pipeline): {seconds:.0f} s")
    assert ran_stages(repro.stdout) == PIPELINE
    # git, through DVC, found the repository and was content with its owner
    assert "fatal:" not in output and "dubious ownership" not in output, output[-4000:]
    assert "ERROR" not in output, output[-4000:]
    # every output belongs to the caller, none to root or the image's user
    foreign = [
        str(path.relative_to(clone))
        for path in [clone, *clone.rglob("*")]
        if (path.lstat().st_uid, path.lstat().st_gid) != CALLER
    ]
    assert foreign == []
    for output_path in ("models/ae", "models/vae", "reports/metrics.json", "mlflow.db"):
        assert (clone / output_path).exists(), output_path
    # and the work tree is a consistent DVC project afterwards
    status, _ = in_container(image, clone, "dvc", "status", "--quiet", timeout=300)
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stderr == ""
    git, _ = in_container(image, clone, "git", "status", "--porcelain", timeout=120)
    assert git.returncode == 0 and git.stderr == "", git.stderr
    assert set(git.stdout.split()) <= {"M", "dvc.lock", "reports/metrics.json",
                                       "reports/class_shares.json"}, git.stdout  # fmt: skip


def test_the_image_runs_as_its_own_user_with_the_pinned_dependencies(image):
    """By default the image runs as its unprivileged user, and what its venv holds is what
    requirements.lock pins (the Makefile's set-up, run by the Dockerfile)."""

    def run(*command: str) -> str:
        done = subprocess.run(["docker", "run", "--rm", "--network", "none", image, *command],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run("id", "-u").strip() == "1000"
    # No telemetry from DVC, Great Expectations, Ray or MLflow, whatever runs in the image.
    environment = set(run("env").split())
    assert {"DVC_NO_ANALYTICS=1", "GX_ANALYTICS_ENABLED=False", "RAY_USAGE_STATS_ENABLED=0",
            "MLFLOW_DISABLE_TELEMETRY=true", "DO_NOT_TRACK=1"} <= environment  # fmt: skip
    installed = set(run("python", "-m", "pip", "freeze", "--exclude", "wardrobe").split())
    pinned = {line for line in (ROOT / "requirements.lock").read_text().split() if "==" in line}
    assert installed and installed <= pinned, sorted(installed - pinned)
    assert {"tensorflow-cpu", "dvc", "mlflow", "great-expectations"} <= {
        line.split("==")[0].lower().replace("_", "-") for line in installed
    }


EVERY_PACKAGE = ("dataset-fashion-mnist git npm chromium chromium-driver postgresql socat "
                 "iproute2 python3 strace docker.io debootstrap")  # fmt: skip


def test_make_system_in_debian_12_installs_every_package_the_tests_probe(image):
    """The GitHub job's system, Debian 12 (the base image the Dockerfile names, made here by
    debootstrap), gets every package the Makefile probes for `make test` from `make
    system-test`, under the names and at the paths it probes: a second run finds them all."""
    base = next(line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines()
                if line.startswith("FROM "))  # fmt: skip
    script = (
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        "--no-install-recommends make >/dev/null && make -C /src --no-print-directory "
        "system-test >/dev/null && make -C /src --no-print-directory system-test"
    )
    done, seconds = timed(
        ["docker", "run", "--rm", "--network", "host", "-v", f"{ROOT}:/src:ro", base,
         "sh", "-c", script], timeout=1800,
    )  # fmt: skip
    print(f"make system-test in {base}: {seconds:.0f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == (
        f"system: every package present ({EVERY_PACKAGE})"
    ), done.stdout
