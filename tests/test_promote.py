"""The registry as a gate (`make promote`) and the champion over REST (`make serve`), on a
quick pipeline retrained by DVC in a real git repository, with the project's measured noise
(reports/noise.json) as the tolerances."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    MAKE_IN_COPY,
    NO_TELEMETRY,
    ask,
    assert_answers_only_its_own_names,
    client_for,
    commit,
    dvc,
    free_port,
    ran_stages,
    repo_env,
    telemetry_of,
    write_params,
)
from wardrobe.promote import Row, gate, gate_metrics

PROMOTE = [sys.executable, "-m", "wardrobe.promote"]


def promote(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        PROMOTE, cwd=repo, env=repo_env(repo), capture_output=True, text=True, timeout=300
    )


def registry(repo: Path, model: str) -> tuple[list[str], dict[str, str]]:
    """The decoder's versions and its aliases."""
    client = client_for(repo)
    name = f"wardrobe-{model}-decoder"
    versions = sorted(str(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    return versions, {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


def retrain_with(repo: Path, message: str, **sections: dict) -> list[str]:
    """params.yaml with these sections changed, `dvc repro`, committed; the stages it ran."""
    write_params(repo, repo / "params.yaml", **sections)
    result = dvc(repo, "repro")
    assert result.returncode == 0, result.stdout + result.stderr
    commit(repo, message)
    return ran_stages(result.stdout)


def line_of(result: subprocess.CompletedProcess, model: str) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    [line] = [x for x in result.stdout.splitlines() if x.startswith(f"wardrobe-{model}-decoder:")]
    return line


@pytest.fixture(scope="module")
def promoted(retrained, tmp_path_factory) -> Path:
    """A copy of the retrained quick project, committed with its dvc.lock and promoted at
    once by two `make promote` in two checkouts of that commit, as two CI jobs would, into
    the first one's store."""
    work = tmp_path_factory.mktemp("promote")
    repo = Path(shutil.copytree(retrained[0], work / "repo", symlinks=True))
    commit(repo, "the quick run's dvc.lock")
    other = Path(shutil.copytree(repo, work / "other", symlinks=True))
    store = {"MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}"}
    both = [
        subprocess.Popen(PROMOTE, cwd=checkout, env=repo_env(checkout, store),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for checkout in (repo, other)
    ]  # fmt: skip
    for process in both:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, out + err
    return repo


@pytest.mark.slow
def test_two_promotions_at_once_register_one_version_and_one_champion(promoted, tmp_path):
    for model in ("ae", "vae"):
        versions, aliases = registry(promoted, model)
        assert versions == ["1"] and aliases == {"candidate": "1", "champion": "1"}, model
        version = client_for(promoted).get_model_version(f"wardrobe-{model}-decoder", "1")
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=promoted, text=True,
                              capture_output=True, check=True).stdout.strip()  # fmt: skip
        assert version.tags["git_commit"] == head
        lock = (promoted / "dvc.lock").read_text()
        assert version.tags["dvc_models_md5"] in lock
        runs = json.loads((promoted / "reports" / "evaluation_runs.json").read_text())
        assert version.tags["evaluation_run"] == runs[model]["run_id"]
        # the wardrobe page's ONNX decoder and data, logged with the version
        assert version.tags["explore_artifacts"] == "explore"
        (tmp_path / model).mkdir()
        logged = client_for(promoted).download_artifacts(
            version.run_id, "explore", str(tmp_path / model)
        )
        for suffix in (".onnx", ".json"):
            made = promoted / "reports" / "explore" / f"{model}{suffix}"
            assert (Path(logged) / f"{model}{suffix}").read_bytes() == made.read_bytes()
    again = promote(promoted)
    assert "version 1 is the champion already" in line_of(again, "ae")
    assert registry(promoted, "ae")[0] == ["1"] and registry(promoted, "vae")[0] == ["1"]


@pytest.mark.slow
def test_the_champion_moves_only_beyond_the_noise(promoted, tmp_path):
    """Better beyond the noise moves `champion`; a clearly worse model (1 epoch after 4) only
    becomes `candidate`; the better model's run after it keeps `champion`. In a copy of the
    promoted project: the registry the other tests read stays at version 1."""
    promoted = Path(shutil.copytree(promoted, tmp_path / "repo", symlinks=True))
    assert "train_ae" in retrain_with(promoted, "AE: 4 epochs", ae={"epochs": 4})
    better = promote(promoted)
    print(better.stdout)
    assert line_of(better, "ae").startswith("wardrobe-ae-decoder: champion -> version 2 (better")
    assert "test.bce (lower is better)" in better.stdout
    # Each row's tolerance is reports/noise.json's for that model's metric.
    measured = json.loads((promoted / "reports" / "noise.json").read_text())["files"]
    shown, current = {}, None
    for block in (b.strip() for b in better.stdout.split("\n\n")):
        model = block.split(" ", 1)[0] if block.startswith(("ae (", "vae (")) else None
        if model:
            current = model
        for row in block.splitlines():
            cells = [c.strip() for c in row.strip("|").split("|")]
            if len(cells) == 5 and cells[0].startswith("test."):
                shown[f"{current}.{cells[0].split(' (')[0]}"] = float(cells[3])
    assert len(shown) == 2 * len(gate_metrics()), better.stdout
    for key, tolerance in shown.items():
        expected = measured["reports/metrics.json"][key]["tolerance"]
        assert tolerance == pytest.approx(expected, rel=5e-3) and tolerance > 0, key
    assert "champion already" in line_of(better, "vae")  # the VAE did not change
    assert registry(promoted, "ae") == (["1", "2"], {"candidate": "2", "champion": "2"})

    # DVC's run cache restores the 1-epoch AE: the same model, so the same version.
    retrain_with(promoted, "AE: 1 epoch", ae={"epochs": 1})
    worse = promote(promoted)
    print(worse.stdout)
    line = line_of(worse, "ae")
    assert line.startswith("wardrobe-ae-decoder: champion stays version 2; candidate version 1")
    assert "worse beyond the noise on test.bce" in line
    assert registry(promoted, "ae") == (["1", "2"], {"candidate": "1", "champion": "2"})
    # make serve serves the champion (version 2), not the candidate, which is also what the
    # workspace holds now
    z = [[0.0, 0.0], [2.0, -1.0]]
    server, port, _ = start_serving(promoted, "ae")
    try:
        status, answer = post(f"http://127.0.0.1:{port}/invocations", {"inputs": z})
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    assert status == 200, answer
    served = np.asarray(answer["predictions"], dtype=np.float32)
    champion = decoded_by(promoted, "models:/wardrobe-ae-decoder/2", z)
    candidate = decoded_by(promoted, str(promoted / "models/ae/decoder.keras"), z)
    np.testing.assert_allclose(served, champion, atol=1e-6)
    assert np.abs(served - candidate).max() > 1e-3  # the two models differ: a real check

    retrain_with(promoted, "AE: 4 epochs again", ae={"epochs": 4})
    kept = promote(promoted)
    assert "version 2 is the champion already" in line_of(kept, "ae")
    assert registry(promoted, "ae") == (["1", "2"], {"candidate": "2", "champion": "2"})


@pytest.mark.slow
def test_promote_refuses_what_the_commit_does_not_describe(promoted, tmp_path):
    repo = Path(shutil.copytree(promoted, tmp_path / "repo", symlinks=True))
    # Each of what decides the models: an edit to it, uncommitted, is named and refused.
    for path in ("params.yaml", "dvc.lock", "dvc.yaml", "pipeline/train_ae.py",
                 "src/wardrobe/metrics.py"):  # fmt: skip
        (repo / path).write_text((repo / path).read_text() + "\n# edited\n")
        result = promote(repo)
        assert result.returncode == 1, (path, result.stdout)
        assert (
            result.stderr.strip().splitlines()[-1]
            .startswith(f"promote: error: {path} differ from commit")
        ), (path, result.stderr)  # fmt: skip
        subprocess.run(["git", "checkout", path], cwd=repo, check=True)
    untracked = repo / "src" / "wardrobe" / "planted.py"
    untracked.write_text("")
    result = promote(repo)
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("promote: error: src/wardrobe/planted.py differ from commit")
    ), result.stderr
    untracked.unlink()
    write_params(repo, repo / "params.yaml", vae={"epochs": 2})
    commit(repo, "params without their dvc repro")
    stale = promote(repo)
    assert stale.returncode == 1
    line = stale.stderr.strip().splitlines()[-1]
    assert "train_vae" in line and "out of date" in line and "dvc repro" in line, stale.stderr


@pytest.mark.slow
def test_a_bad_noise_file_stops_promote_before_the_registry_changes(promoted, tmp_path):
    """A negative tolerance would call a worse candidate better and move `champion`: promote
    stops with one line naming the key, and no version or alias moves."""
    repo = Path(shutil.copytree(promoted, tmp_path / "repo", symlinks=True))
    before = {model: registry(repo, model) for model in ("ae", "vae")}
    path = repo / "reports" / "noise.json"
    measured = json.loads(path.read_text())
    measured["files"]["reports/metrics.json"]["ae.test.bce"]["tolerance"] = -1.0
    path.write_text(json.dumps(measured))
    result = promote(repo)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"promote: error: {path}: files.reports/metrics.json.ae.test.bce.tolerance is -1.0, not "
        "a finite number >= 0; measure the noise again (make noise) or restore the file from git"
    ], result.stderr
    assert {model: registry(repo, model) for model in ("ae", "vae")} == before


def test_the_gate_needs_better_somewhere_and_worse_nowhere():
    def rows(*deltas: float) -> list[Row]:  # candidate minus champion, lower is better
        return [Row(f"m{i}", 1.0, 1.0 + d, 0.1, "lower") for i, d in enumerate(deltas)]

    assert gate(rows(-0.2, 0.0)) == (True, "better beyond the noise on m0, nowhere worse")
    assert gate(rows(-0.2, 0.2))[0] is False  # better on one, worse on another
    assert gate(rows(-0.05, 0.05)) == (False, "no metric is better beyond the noise")
    assert Row("c", 0.5, 0.7, 0.1, "higher").verdict == "better"
    assert Row("c", 0.5, 0.45, 0.1, "higher").verdict == "within the noise"
    gated = gate_metrics()
    assert set(gated) >= {"test.bce"} and any("generation" in m for m in gated)


SERVE_CHECK = """
import json, sys, numpy as np, keras
import wardrobe.models.vae  # noqa: F401
decoder = keras.models.load_model(sys.argv[1])
z = np.array(json.loads(sys.argv[2]), dtype="float32")
print(json.dumps(decoder.predict(z, verbose=0).tolist()))
"""


def post(url: str, payload: object) -> tuple[int, object]:
    request = urllib.request.Request(
        url, json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def start_serving(repo: Path, model: str) -> tuple[subprocess.Popen, int, int]:
    """`make serve MODEL=<model>` on a free port, once it answers /ping: (the make process,
    the port, the most latent vectors a request that it printed)."""
    port = free_port()
    server = subprocess.Popen(
        [*MAKE_IN_COPY, "serve", f"MODEL={model}", f"SERVE_PORT={port}"],
        cwd=repo, env=repo_env(repo), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    for line in server.stdout:  # under a parent make, make's "Entering directory" first
        limit = re.search(r"\(at most (\d+) latent vectors of \d+ a request\)", line)
        if limit:
            break
    else:
        pytest.fail(f"make serve exited ({server.wait()}) before its line")
    deadline = time.monotonic() + 180
    while True:
        assert server.poll() is None, server.stdout.read()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as answer:
                if answer.status == 200:
                    return server, port, int(limit.group(1))
        except OSError:
            pass
        assert time.monotonic() < deadline, "the server did not answer /ping in 180 s"
        time.sleep(1)


def decoded_by(repo: Path, model_uri_or_file: str, z: list) -> np.ndarray:
    """What a decoder makes of `z`, in a new process: a registered version (models:/...) loaded
    by MLflow, or a Keras file."""
    code = SERVE_CHECK if model_uri_or_file.endswith(".keras") else REGISTERED_CHECK
    out = subprocess.run(
        [sys.executable, "-c", code, model_uri_or_file, json.dumps(z)], cwd=repo,
        env=repo_env(repo), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    # the last line: MLflow's Keras flavor predicts with a progress bar on stdout
    return np.asarray(json.loads(out.strip().splitlines()[-1]), dtype=np.float32)


REGISTERED_CHECK = """
import json, sys, numpy as np, mlflow
from wardrobe.tracking.store import default_tracking_uri
mlflow.set_tracking_uri(default_tracking_uri())  # the project's own store
model = mlflow.pyfunc.load_model(sys.argv[1])
z = np.array(json.loads(sys.argv[2]), dtype="float32")
print(json.dumps(np.asarray(model.predict(z)).tolist()))
"""


def served_python(server: subprocess.Popen) -> int:
    """The pid of the server `make serve` started (its Python, under make's shell)."""
    import psutil

    for process in psutil.Process(server.pid).children(recursive=True):
        if "wardrobe.serve" in " ".join(process.cmdline()):
            return process.pid
    raise AssertionError("make serve started no python -m wardrobe.serve")


@pytest.mark.slow
def test_make_serve_answers_with_the_champion_decoder(promoted):
    """`make serve MODEL=vae` on 127.0.0.1: three latent vectors come back as the decoder's
    own images; every bad request gets a 4xx with one line and the server goes on serving; it
    answers only its own names; it sends no telemetry; SIGTERM stops it within seconds."""
    server, port, most = start_serving(promoted, "vae")
    url = f"http://127.0.0.1:{port}"
    try:
        assert 100 <= most < 100_000, most
        python = served_python(server)
        assert telemetry_of(python) == NO_TELEMETRY
        z = [[0.0, 0.0], [1.5, -0.5], [-2.0, 1.0]]
        status, answer = post(f"{url}/invocations", {"inputs": z})
        assert status == 200, answer
        served = np.asarray(answer["predictions"], dtype=np.float32)
        assert served.shape == (3, 32, 32, 1)
        expected = decoded_by(promoted, str(promoted / "models/vae/decoder.keras"), z)
        np.testing.assert_allclose(served, expected, atol=1e-6)

        own = f"127.0.0.1:{port}"
        refused = {
            name: ask(port, "POST", "/invocations", own, body=body)
            for name, body in BAD_REQUESTS.items()
        }
        refused["too many"] = ask(
            port, "POST", "/invocations", own,
            body=json.dumps({"inputs": [[0, 0]] * (most + 1)}, separators=(",", ":")).encode(),
        )  # fmt: skip
        refused["too large"] = ask(  # 4.3 MB
            port, "POST", "/invocations", own,
            body=json.dumps({"inputs": [[0.123456789, -0.123456789]] * 100_000}).encode(),
        )  # fmt: skip
        refused["not JSON"] = ask(
            port, "POST", "/invocations", own, body=b"0,0\n",
            headers={"Content-Type": "text/csv"},
        )  # fmt: skip
        for name, (status, body) in refused.items():
            message = json.loads(body)["message"]
            print(f"serve: {name}: {status} {message}")
            assert (status, "\n" not in message) == (EXPECTED_STATUS[name], True), (name, body)
        assert "shape (-1, 2)); got 3" in json.loads(refused["wrong size"][1])["message"]
        assert (
            f"got {most + 1}: send them in several"
            in json.loads(refused["too many"][1])["message"]
        )
        assert "the body is over" in json.loads(refused["too large"][1])["message"]
        status, _ = post(f"{url}/invocations", {"inputs": z})
        assert status == 200  # still serving
        assert_answers_only_its_own_names(
            port, "/ping", ("/invocations", json.dumps({"inputs": z}).encode())
        )

        batch = {"inputs": np.random.default_rng(0).normal(size=(16, 2)).tolist()}
        seconds = []
        for _ in range(100):
            start = time.perf_counter()
            assert post(f"{url}/invocations", batch)[0] == 200
            seconds.append(time.perf_counter() - start)
        print(f"serve: median {statistics.median(seconds) * 1000:.1f} ms for 16 vectors")

        # Why 30 s: the requests in flight finish first, and the suite's other worker may be
        # training on the second core; an unstopped server would never end.
        os.kill(python, signal.SIGTERM)
        out, _ = server.communicate(timeout=30)
        assert server.returncode != 0
        assert "serve: stopped (SIGTERM)" in out, out
        assert not Path(f"/proc/{python}").exists()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


BAD_REQUESTS = {
    "NaN": b'{"inputs": [[NaN, 0.0]]}',
    "1e308": b'{"inputs": [[1e308, 0.0]]}',
    "1e400": b'{"inputs": [[1e400, 0.0]]}',
    "wrong size": b'{"inputs": [[0.0, 0.0, 0.0]]}',
    "a string": b'{"inputs": [["a", 0.0]]}',
    "no inputs": b'{"dataframe_records": [{"a": 1}]}',
    "broken JSON": b'{"inputs": [[0.0, ',
}
EXPECTED_STATUS = {
    "NaN": 422, "1e308": 422, "1e400": 422, "wrong size": 400, "a string": 400,
    "no inputs": 400, "broken JSON": 400, "too many": 413, "too large": 413, "not JSON": 415,
}  # fmt: skip


def test_serve_without_a_champion_is_one_line(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    result = subprocess.run(
        [sys.executable, "-m", "wardrobe.serve", "--model", "ae"], cwd=tmp_path,
        env=repo_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1].startswith("serve: error: sqlite:///")
        and "has no wardrobe-ae-decoder@champion; promote a model first" in result.stderr
    )


@pytest.mark.slow
def test_make_explore_model_champion_serves_the_champions_onnx_decoders(promoted):
    """`make explore MODEL=champion` downloads each champion's logged ONNX decoder and page
    data from the store, and serves them, each marked with its registered version."""
    from conftest import ask, free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "wardrobe.explore", "--port", str(port), "--model", "champion"],
        cwd=promoted, env=repo_env(promoted), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        line = server.stdout.readline()
        assert line.strip() == f"explore: http://127.0.0.1:{port}/ (the registry's champions)", (
            line + server.stderr.read()
        )
        for model in ("ae", "vae"):
            champion = registry(promoted, model)[1]["champion"]
            status, body = ask(port, "GET", f"/data/{model}.json", f"127.0.0.1:{port}")
            assert status == 200 and json.loads(body)["version"] == champion
            status, body = ask(port, "GET", f"/data/{model}.onnx", f"127.0.0.1:{port}")
            assert status == 200 and body.startswith(b"\x08")  # an ONNX ModelProto
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
