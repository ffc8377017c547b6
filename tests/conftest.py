"""Shared helpers and fixtures: the real dataset, params, tiny projects, stage scripts (in-process
and as DVC runs them), project copies for DVC, synthetic IDX files and a local HTTP mirror."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import importlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml

from wardrobe import TELEMETRY_OFF
from wardrobe.checks.verdict import CHECKED_KEY
from wardrobe.dataset import SPLIT_FILES, data_digest, save_split
from wardrobe.fetch import CanonicalFile

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
VENV_BIN = Path(sys.executable).parent
# `make` run in a project copy with this checkout's venv. -o: the venv is used as it is; were
# make to rebuild .installed, it would install the package, editable, from the copy.
MAKE_IN_COPY = ("make", "--no-print-directory", f"VENV={VENV_BIN.parent}", "-o",
                f"{VENV_BIN.parent}/.installed")  # fmt: skip
# What `make setup` installed for the reports; projects copied elsewhere use the checkout's.
WEB_ASSETS = {"WARDROBE_WEB_ASSETS": str(ROOT / "tools" / "web-assets" / "node_modules")}
REAL_MIRROR = Path("/usr/share/datasets/fashion-mnist")
# Session fixtures that cost nothing to build again: each xdist worker has its own.
PER_WORKER = {"real_mirror"}

# The stages of a whole pipeline run, in the order `dvc repro` runs them; those an edit of
# evaluate.* runs (the evaluations and what follows them, but the page's data, which reads
# the models alone); those an edit of vae.* runs.
PIPELINE = [
    "fetch", "preprocess", "validate", "train_ae", "train_vae", "train_classifier",
    "reference", "evaluate@ae", "evaluate@vae", "collect", "plots@ae", "plots@vae", "explore",
]  # fmt: skip
EVALUATION_STAGES = PIPELINE[PIPELINE.index("reference") : PIPELINE.index("explore")]
VAE_STAGES = ["train_vae", "evaluate@vae", "collect", "plots@vae", "explore"]

QUICK = {"epochs": 2, "batch_size": 50}  # a training section of the tiny project
QUICK_RUN = {  # a whole pipeline run on the real data in a few minutes
    "preprocess": {"limit_train": 500, "limit_test": 200},
    "ae": {"epochs": 1},
    "vae": {"epochs": 1},
    "classifier": {"epochs": 1, "min_accuracy": 0.0},
    "evaluate": {"generated": 500},
}

# A whole pipeline run in seconds a stage (10 images a split): the sweeps' trials.
TINY_RUN = {
    "preprocess": {"limit_train": 10, "limit_test": 10},
    "ae": {"epochs": 1}, "vae": {"epochs": 1},
    "classifier": {"epochs": 1, "min_accuracy": 0.0},
    "evaluate": {"generated": 6},
    "plots": {"reconstructions": 2, "scatter_points": 10, "samples": 2, "grid_size": 2, "dpi": 20},
}  # fmt: skip


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI (`CI=true`, as GitHub Actions and .ci/run set it) no test passes by skipping: a
    missing tool, service or capability fails the test with the skip's reason, since a skip
    would leave its promise untested and the run green. Elsewhere a skip keeps its reason."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and _in_ci():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        reason = str(reason).removeprefix("Skipped: ")
        report.outcome, report.longrepr = "failed", f"CI=true, and the test skipped: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a module that skips as it is collected (`pytest.skip(...,
    allow_module_level=True)`, `pytest.importorskip` at its top): under CI it is a collection
    error with the skip's reason, not a file of tests that never ran."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and _in_ci():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        reason = str(reason).removeprefix("Skipped: ")
        report.outcome, report.longrepr = "failed", f"CI=true, and the module skipped: {reason}"


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the groups
def pytest_collection_modifyitems(config, items):
    """On xdist's workers (`make test`: -n 2 --dist loadgroup), the tests that share a module-
    or session-wide fixture of this suite (a project, a stack, a cluster, an image) run on one
    worker, so each is built once: every connected set of such tests is one xdist group. A
    module-wide fixture is one per module, wherever it is defined (conftest's `browser` in
    test_browser and in test_explore are two): it joins the tests of its module only."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    shared_by_item = []
    for item in items:
        module = item.nodeid.partition("::")[0]
        shared = sorted(
            f"{module if definition.scope == 'module' else definition.baseid}::{name}"
            for name, definitions in item._fixtureinfo.name2fixturedefs.items()
            for definition in definitions[-1:]
            if definition.scope in ("module", "session") and name not in PER_WORKER
            and Path(str(definition.func.__code__.co_filename)).parent == TESTS
        )  # fmt: skip
        for other in shared:
            parent[root(other)] = root(shared[0])
        shared_by_item.append(shared)
    members: dict[str, set[str]] = {}
    for key in parent:
        members.setdefault(root(key), set()).add(key.rpartition("::")[2])
    for item, shared in zip(items, shared_by_item, strict=True):
        if shared:  # named by its fixtures, e.g. cluster+stack+swept
            item.add_marker(pytest.mark.xdist_group("+".join(sorted(members[root(shared[0])]))))


def pytest_collection_finish(session):
    """On a worker of --dist loadgroup, xdist names each grouped test `<id>@<group>`: were it not
    to (an xdist that cannot set pytest's node ids), each worker would build every shared
    fixture again, so the run stops here instead."""
    if getattr(session.config.option, "loadgroup", False):
        lost = [i.nodeid for i in session.items
                if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]  # fmt: skip
        if lost:
            raise pytest.UsageError(
                f"pytest-xdist did not group {lost[0]} (and {len(lost) - 1} more): its "
                "--dist loadgroup needs the pytest that requirements.lock pins (make setup)"
            )


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def real_mirror() -> Path:
    """The Debian package's copy of Fashion-MNIST (installed by `make setup` as root)."""
    if not (REAL_MIRROR / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"{REAL_MIRROR} is missing: apt-get install dataset-fashion-mnist")
    return REAL_MIRROR


def write_params(dest_dir: Path, source: Path | None = None, **sections: dict) -> Path:
    """Write `dest_dir`/params.yaml: `source` (the project's params.yaml by default) with the
    given sections updated, e.g. `write_params(tmp, vae={"epochs": 1})`."""
    raw = yaml.safe_load((source or ROOT / "params.yaml").read_text())
    for section, values in sections.items():
        raw[section].update(values)
    path = dest_dir / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def make_tiny_project(path: Path) -> Path:
    """A tiny project in `path`: quick params (2 epochs; no accuracy floor for the
    classifier), 200 train / 100 test real-looking images, passed checks, and a git
    repository (for the commit tag)."""
    write_params(path, ae=QUICK, vae=QUICK, classifier={**QUICK, "min_accuracy": 0.0})
    (path / "dvc.yaml").write_text("stages: {}\n")
    rng = np.random.default_rng(0)
    for split, n in (("train", 200), ("test", 100)):
        images = np.zeros((n, 32, 32, 1), np.float32)
        images[:, 2:30, 2:30] = rng.random((n, 28, 28, 1), dtype=np.float32) ** 3
        save_split(path / "data" / f"{split}.npz", images, np.arange(n, dtype=np.uint8) % 10)
    write_verdict(path / "checks" / "summary.json", path / "data")
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    commit(path, "init")
    return path


def write_verdict(summary: Path, data_dir: Path, success: bool = True) -> None:
    """A data-check summary as validate writes it, for the splits now in data_dir."""
    summary.parent.mkdir(parents=True, exist_ok=True)
    verdict = {"success": success, CHECKED_KEY: data_digest(data_dir)}
    summary.write_text(json.dumps(verdict))


def enter_tiny_project(path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny project in `path`, made the working directory, tracking into its own mlflow.db
    (no MLFLOW_* or DVC_EXP_NAME settings of the calling shell)."""
    for name in list(os.environ):
        if name.startswith("MLFLOW_") or name == "DVC_EXP_NAME":
            monkeypatch.delenv(name)
    monkeypatch.chdir(path)
    return make_tiny_project(path)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """The tiny project as the working directory (`enter_tiny_project`)."""
    return enter_tiny_project(tmp_path, monkeypatch)


def train(project: Path, model: str, out: str | None = None):
    """Run a training stage's library function in this process, in `project` (the working
    directory), as its stage script would; return its `Trained`."""
    from wardrobe.params import load

    params = load(project / "params.yaml")
    trainer = importlib.import_module(f"wardrobe.training.{model}")
    return trainer.train(
        getattr(params, model), params.seed, project / "data",
        project / "checks" / "summary.json", project / (out or f"models/{model}"),
    )  # fmt: skip


def objective_and_its_sample(vae, images: np.ndarray) -> tuple[tuple[float, ...], tuple]:
    """The VAE's objective terms (total, reconstruction, KL) on `images`, and the encoder's
    (z_mean, z_log_var, z) with the very z the objective drew: the sampler's state is put
    back and z drawn again, so a test can recompute every term exactly."""
    import keras

    state = vae.encoder.get_layer("sampling").seed_generator.state
    before = keras.ops.convert_to_numpy(state)
    terms = tuple(float(v) for v in vae.objective_terms(images, training=False))
    state.assign(before)
    return terms, tuple(keras.ops.convert_to_numpy(t) for t in vae.encoder(images))


def client_for(project: Path):
    """An MLflow client of the project's own store."""
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def stage_env(extra: dict | None = None) -> dict:
    """The environment for a stage script run on the checkout's code, with no tracking
    settings of the calling shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_EXP"))}
    return {**env, **WEB_ASSETS, "PYTHONPATH": str(ROOT / "src"), **(extra or {})}


def run_script(cwd: Path, script: str, *args: str, env: dict | None = None):
    """Run pipeline/<script>.py of the checkout in `cwd`, as DVC does: a new process."""
    return subprocess.run(
        [sys.executable, str(ROOT / "pipeline" / f"{script}.py"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=600, env=stage_env(env),
    )  # fmt: skip


def assert_one_line_error(result: subprocess.CompletedProcess, stage: str, *needles: str) -> str:
    """The process failed with exit status 1 and one `<stage>: error:` line holding every
    needle, and no traceback; return that line."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if f"{stage}: error:" in line]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def project_repo(dest: Path) -> Path:
    """Copy the project's files (tracked and not ignored) into a fresh git repository."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.split("\0")  # fmt: skip
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=dest, check=True)
    commit(dest, "project")
    return dest


def commit(repo: Path, message: str, *paths: str) -> None:
    """Commit these paths, or everything in the work tree."""
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run([*git, "add", *(paths or ["-A"])], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", message, *paths], cwd=repo, check=True)


def repo_env(repo: Path, extra: dict | None = None) -> dict:
    """The environment of a command in a project copy: the venv's tools on PATH, the copy's
    code on PYTHONPATH, no tracking or DVC settings of the calling shell, no telemetry."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))},
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(repo / "src"),  # the copy's code, not the installed checkout's
        "DVC_NO_ANALYTICS": "1",
        "GX_ANALYTICS_ENABLED": "False",
        **TELEMETRY_OFF,
        **WEB_ASSETS,
        **(extra or {}),
    }


def dvc(repo: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "dvc"), *args], cwd=repo, env=repo_env(repo, env),
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def shown_experiments(repo: Path, env: dict | None = None) -> dict[str, dict]:
    """`dvc exp show --json`'s experiments by name: each one's params and metrics."""
    from wardrobe.sweep.trial import shown_experiments as by_name

    shown = dvc(repo, "exp", "show", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    return by_name(shown.stdout)


def ran_stages(output: str) -> list[str]:
    """The stages a `dvc repro` or `dvc exp run` ran, in order, from its output."""
    return re.findall(r"^Running stage '([^']+)'", output, flags=re.MULTILINE)


def retrain(repo: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "ci/retrain.sh", *args], cwd=repo, env=repo_env(repo, env),
        capture_output=True, text=True, timeout=1500,
    )  # fmt: skip


@pytest.fixture(scope="session")
def retrained(tmp_path_factory, real_mirror):
    """A project copy whose last commit switches params.yaml to a quick run, retrained by
    `ci/retrain.sh HEAD~1` as the workflow runs it on main: (repo, result, CI files). The
    CI, browser and experiment tests share it."""
    work = tmp_path_factory.mktemp("ci")
    repo = project_repo(work / "project")
    write_params(repo, repo / "params.yaml", **QUICK_RUN)
    commit(repo, "quick-run params")
    ci_files = {"GITHUB_STEP_SUMMARY": work / "summary.md", "GITHUB_OUTPUT": work / "output"}
    start = time.perf_counter()
    result = retrain(repo, "HEAD~1", env={k: str(v) for k, v in ci_files.items()})
    print(f"ci/retrain.sh with a params change: {time.perf_counter() - start:.1f} s")
    return repo, result, ci_files


@pytest.fixture
def retrained_copy(retrained, tmp_path) -> Path:
    """A copy of the retrained project (work tree, git, DVC cache, MLflow store) for a test
    that changes it (runs experiments, commits, breaks files): the session's project stays as
    the tests that only read it expect, whatever order they run in."""
    return Path(shutil.copytree(retrained[0], tmp_path / "repo", symlinks=True))


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_raw_dir(path: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    """A small raw dir in the canonical layout: random images, `per_class` images per class."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    for split, n in per_class.items():
        labels = np.tile(np.arange(10, dtype=np.uint8), n)
        images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
        images_name, labels_name = SPLIT_FILES[split]
        (path / images_name).write_bytes(idx_bytes(images))
        (path / labels_name).write_bytes(idx_bytes(labels))
    return path


@pytest.fixture
def small_files(tmp_path: Path) -> tuple[dict[str, CanonicalFile], Path]:
    """Two small synthetic 'canonical' files (content + checksum) and a dir of their .gz."""
    source = tmp_path / "small_source"
    source.mkdir()
    files = {}
    for i, name in enumerate(["a-images-idx3-ubyte", "a-labels-idx1-ubyte"]):
        content = bytes(range(256)) * (i + 1) * 4
        (source / f"{name}.gz").write_bytes(gzip.compress(content))
        files[name] = CanonicalFile(name, hashlib.sha256(content).hexdigest(), len(content))
    return files, source


@dataclass
class Mirror:
    """A local HTTP server over a directory, with per-file misbehaviour for tests."""

    root: Path
    port: int = 0
    fail_first: dict[str, int] = field(default_factory=dict)  # path -> 500s before success
    drop: set[str] = field(default_factory=set)  # paths whose body is cut short
    delay_s: float = 0.0
    requests: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


@pytest.fixture
def http_mirror(tmp_path: Path) -> Iterator[Mirror]:
    root = tmp_path / "http_root"
    root.mkdir()
    mirror = Mirror(root)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):  # keep test output quiet
            pass

        def do_GET(self):
            mirror.requests.append(self.path)
            if mirror.delay_s:
                threading.Event().wait(mirror.delay_s)
            if mirror.fail_first.get(self.path, 0) > 0:
                mirror.fail_first[self.path] -= 1
                self.send_error(503, "Service Unavailable")
                return
            if self.path in mirror.drop:
                body = (root / self.path.lstrip("/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
                return
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    mirror.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield mirror
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    """A loopback port on which nothing listens now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def telemetry_of(pid: int) -> set[bytes]:
    """The telemetry switches (wardrobe.TELEMETRY_OFF's variables) in a process's environment."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    names = tuple(f"{key}=".encode() for key in TELEMETRY_OFF)
    return {v for v in environ if v.startswith(names)}


# What telemetry_of finds in a process that sends none.
NO_TELEMETRY = {f"{key}={value}".encode() for key, value in TELEMETRY_OFF.items()}


def job_runners(processes) -> list[list[str]]:
    """The command lines of those of `processes` (psutil's) that are MLflow's job runner or
    its consumers, which a server the project starts does without."""
    marks = ("mlflow.server.jobs", "huey")
    return [p.cmdline() for p in processes if any(m in a for a in p.cmdline() for m in marks)]


FORGED_HOSTS = ("10.evil.example:{port}", "192.168.evil.example", "evil.example", "localhost")


def ask(
    port: int,
    method: str,
    path: str,
    host: str,
    origin: str | None = None,
    body: bytes | None = None,
    headers: dict | None = None,
) -> tuple[int, bytes]:
    """One request to 127.0.0.1:PORT with the Host (and Origin) given, as a browser that a
    rebound name led there would send it: (status, body)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    sent = {"Host": host, **({"Origin": origin} if origin else {}), **(headers or {})}
    if body is not None:
        sent.setdefault("Content-Type", "application/json")
    try:
        connection.request(method, path, body=body, headers=sent)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def assert_answers_only_its_own_names(
    port: int, read: str, write: tuple[str, bytes], auth: dict | None = None
) -> None:
    """A server on 127.0.0.1:PORT answers its own names and refuses every forged Host (403),
    for a read and a write, and refuses a write from another origin (403)."""
    path, body = write
    own = f"127.0.0.1:{port}"
    assert ask(port, "GET", read, own, headers=auth)[0] == 200
    assert ask(port, "GET", read, f"localhost:{port}", headers=auth)[0] == 200
    for forged in FORGED_HOSTS:
        host = forged.format(port=port)
        for method, where, data in (("GET", read, None), ("POST", path, body)):
            status, answer = ask(port, method, where, host, body=data, headers=auth)
            assert status == 403, (host, method, where, status, answer[:300])
    status, answer = ask(port, "POST", path, own, origin="http://evil.example", body=body,
                         headers=auth)  # fmt: skip
    assert status == 403, (status, answer[:300])


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL on which nothing listens."""
    return f"http://127.0.0.1:{free_port()}/"


# A script, stylesheet or image an HTML page would fetch from the internet.
REMOTE_ASSET = re.compile(r"<(?:script|link|img)\b[^>]*\s(?:src|href)=\"https?://")


# --- the team stack ---------------------------------------------------------------------

PORT_NAMES = ("PG", "S3", "MLFLOW")  # SeaweedFS' own ports are in its network namespace


def free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def stack_ports() -> dict[str, str]:
    """STACK_*_PORT variables: free ports on 127.0.0.1."""
    ports: dict[str, str] = {}
    while len(ports) < len(PORT_NAMES):
        port = random.randrange(20000, 30000)
        if free(port) and str(port) not in ports.values():
            ports[f"STACK_{PORT_NAMES[len(ports)]}_PORT"] = str(port)
    return ports


class Stack:
    """tools/stack.sh of a project copy, its state in `state`, on ports of its own."""

    def __init__(self, repo: Path, state: Path, prefix: Sequence[str] = (), **extra: str) -> None:
        """`prefix`: what each command runs under (`as_user`'s, for a stack of another user)."""
        self.repo, self.state, self.prefix = repo, state, list(prefix)
        self.up: Traced | None = None  # its `make stack`, traced, where a fixture started it
        settings = {"STACK_DIR": str(state), "VENV": str(VENV_BIN.parent), **extra}
        self.env = repo_env(repo, {**stack_ports(), **settings})

    def run(self, action: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.prefix, "bash", "tools/stack.sh", action], cwd=self.repo,
            env={**self.env, **extra}, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    def make_command(self, target: str) -> list[str]:
        """`make stack` / `make stack-down`, the documented way in, with this checkout's venv
        as it is (-o: make installs nothing into it from the copy)."""
        return [*self.prefix, *MAKE_IN_COPY, "-o", f"{VENV_BIN.parent}/.stack-installed", target]

    def make(self, target: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.make_command(target), cwd=self.repo, env=self.env, capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip

    @property
    def client_env(self) -> dict[str, str]:
        """The variables `.stack/env` exports."""
        lines = (self.state / "env").read_text().splitlines()
        exports = [line.removeprefix("export ") for line in lines if line.startswith("export ")]
        return dict(line.split("=", 1) for line in exports)

    @property
    def tracking(self) -> dict[str, str]:
        """The server's URL and login, as `.stack/env` exports them."""
        return {k: v for k, v in self.client_env.items() if k.startswith("MLFLOW_TRACKING_")}

    @property
    def keys(self) -> dict[str, str]:
        """The S3 store's keys and endpoint, as `.stack/env` exports them."""
        names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
        return {k: self.client_env[k] for k in names}

    @property
    def secrets(self) -> dict[str, str]:
        """The generated credentials in `<state>/secrets`."""
        lines = (self.state / "secrets").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)


@contextlib.contextmanager
def memory_cgroup(limit: int) -> Iterator[Path]:
    """A memory cgroup (v2, or v1's memory controller) of `limit` bytes; yields the
    cgroup.procs file a process joins it by. Needs root."""
    name = f"wardrobe-test-{os.getpid()}"
    v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    group = Path("/sys/fs/cgroup" if v2 else "/sys/fs/cgroup/memory") / name
    try:
        group.mkdir()
        (group / ("memory.max" if v2 else "memory.limit_in_bytes")).write_text(str(limit))
    except OSError as exc:
        pytest.fail(f"this test needs a memory cgroup it can make (as root): {exc}")
    try:
        yield group / "cgroup.procs"
    finally:
        for _ in range(50):  # the process has left it once it has exited; the kernel lags
            with contextlib.suppress(OSError):
                group.rmdir()
                break
            time.sleep(0.1)


class Traced:
    """A command run to its end under strace, every program it and its children exec recorded
    with its command line, as `ps` shows it to every user: `execs`, one line per exec. The
    servers it leaves running are let go when it ends (strace detaches)."""

    def __init__(self, command: Sequence[str], cwd: Path, env: dict, log: Path) -> None:
        if not shutil.which("strace"):
            pytest.fail("strace is missing: make test installs it (apt-get install strace)")
        out, err = log.with_suffix(".out"), log.with_suffix(".err")
        with out.open("w") as stdout, err.open("w") as stderr:
            tracer = subprocess.Popen(
                ["strace", "-f", "--seccomp-bpf", "-q", "-I", "1", "-e", "trace=execve", "-e",
                 "signal=none", "-s", "65536", "-o", str(log), "--", *command],
                cwd=cwd, env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + 300
        while (ended := self._exit_status(log)) is None and time.monotonic() < deadline:
            if tracer.poll() is not None:  # everything it traced has ended
                ended = self._exit_status(log)
                break
            time.sleep(0.2)
        if tracer.poll() is None:  # -I 1: a signal makes it detach from what runs on, and end;
            # SIGTERM, not SIGINT, which a shell's background job (a suite run with `&`) ignores
            tracer.send_signal(signal.SIGTERM)
            tracer.wait(timeout=30)
        assert ended is not None, f"{command} did not end within 300 s: {err.read_text()}"
        self.returncode = int(ended)
        self.stdout, self.stderr = out.read_text(), err.read_text()
        self.execs = [line for line in log.read_text(errors="replace").splitlines()
                      if " execve(" in line]  # fmt: skip

    @staticmethod
    def _exit_status(log: Path) -> str | None:
        """The traced command's exit status, once strace has logged it (its pid's first line
        is its exec; its `+++ exited with N +++`, its end)."""
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        top = f"{lines[0].split()[0]} " if lines else None
        ends = [x for x in lines if top and x.startswith(top) and "+++ exited with " in x]
        return ends[0].split("exited with ")[1].split()[0] if ends else None

    def secrets_shown(self, secrets: dict[str, str]) -> list[tuple[str, str]]:
        """(secret's name, command line) for each secret an exec's command line holds."""
        return [(k, line) for k, v in secrets.items() for line in self.execs if v in line]


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """The team stack (`start_stack`), shared by the tests that need one (test_stack;
    test_cluster starts one of its own, so that the two modules can run on two workers)."""
    yield from start_stack(tmp_path_factory)


def start_stack(tmp_path_factory) -> Iterator[Stack]:
    """The team stack (`make stack`) of a project copy, its state in a directory the postgres
    user can reach (pytest's own are private to root), its start traced (`Stack.up`); this
    process's MLflow clients log in to its server while it runs."""
    if not Path("/usr/lib/postgresql/15/bin/initdb").exists():
        pytest.fail("PostgreSQL 15 is missing: make test installs it (apt-get install postgresql)")
    repo = project_repo(tmp_path_factory.mktemp("stack") / "project")
    state = Path(tempfile.mkdtemp(prefix="wardrobe-stack-"))
    os.chmod(state, 0o755)
    started = Stack(repo, state)
    log = tmp_path_factory.mktemp("traced") / "stack-up.strace"
    try:
        started.up = up = Traced(started.make_command("stack"), repo, started.env, log)
        assert up.returncode == 0, up.stdout + up.stderr
        with pytest.MonkeyPatch.context() as patch:
            for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
                patch.setenv(key, started.client_env[key])
            yield started
        down = started.make("stack-down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert started.run("status").stdout.splitlines() == [
            "stack: PostgreSQL: stopped", "stack: SeaweedFS: stopped",
            "stack: MLflow server: stopped",
        ]  # fmt: skip
    finally:
        started.run("down")  # whatever a failure above left running
        shutil.rmtree(state, ignore_errors=True)


CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's) driven by Selenium, with no background requests."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(
            "chromium and chromium-driver are missing: apt-get install chromium chromium-driver"
            " (`make test` does, as root)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1600,1000",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
    ):
        options.add_argument(flag)  # fmt: skip
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for tests
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()
