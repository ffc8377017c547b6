"""The wardrobe page (`make explore`): stage explore's ONNX decoders and data, the server, and
the page in headless Chromium, on models trained for a minute on real Fashion-MNIST."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    ask,
    assert_answers_only_its_own_names,
    enter_tiny_project,
    free_port,
    stage_env,
    train,
    write_params,
    write_verdict,
)
from wardrobe.dataset import CLASS_NAMES

pytestmark = pytest.mark.slow  # three trainings on 10,000 real images: a minute or two
TROUSER = CLASS_NAMES.index("Trouser")
SCREENSHOT = os.environ.get("WARDROBE_EXPLORE_SCREENSHOT")  # docs/figures/explore.png


@pytest.fixture(scope="module")
def garments(tmp_path_factory, real_mirror):
    """A project whose AE, VAE and classifier trained on 10,000 real training images (3
    epochs at twice the default learning rates, batches of 50; the classifier 1 epoch), and
    stage explore's data of them, in this process. The default rates fall short: with them,
    on 8,000 images (3 epochs, batches of 100) both models' densest Trouser codes decode to
    what the classifier calls dresses, and on 12,000 (batches of 50) the VAE's still does."""
    from wardrobe.dataset import preprocess
    from wardrobe.explore.data import export
    from wardrobe.params import load

    project = tmp_path_factory.mktemp("explore")
    raw = tmp_path_factory.mktemp("raw")
    for name in os.listdir(real_mirror):
        if name.endswith(".gz"):
            with gzip.open(real_mirror / name) as packed:
                (raw / name[:-3]).write_bytes(packed.read())
    with pytest.MonkeyPatch.context() as monkeypatch:
        enter_tiny_project(project, monkeypatch)
        section = {"epochs": 3, "batch_size": 50, "learning_rate": 0.002}
        write_params(project, project / "params.yaml", ae=section, vae=section,
                     classifier={"epochs": 1, "batch_size": 50, "min_accuracy": 0.0},
                     preprocess={"limit_train": 10000, "limit_test": 1000},
                     plots={"scatter_points": 1000})  # fmt: skip
        params = load(project / "params.yaml")
        preprocess(params.preprocess, raw, project / "data")
        write_verdict(project / "checks" / "summary.json", project / "data")
        for model in ("ae", "vae", "classifier"):
            train(project, model)
        export(params.plots, project / "models", project / "data", project / "reports/explore")
        yield project


def start(project: Path, port: int, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "wardrobe.explore", "--port", str(port), *args],
        cwd=project, env=stage_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip


def wait_for(process: subprocess.Popen, port: int) -> str:
    """The line the server printed, once it answers."""
    line = process.stdout.readline()
    assert line.startswith(f"explore: http://127.0.0.1:{port}/"), (line, process.stderr.read())
    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return line
        time.sleep(0.05)
    raise AssertionError(f"nothing answers on {port}")


@pytest.fixture(scope="module")
def page(garments):
    """`python -m wardrobe.explore` (make explore's command) on the trained project."""
    port = free_port()
    process = start(garments, port)
    line = wait_for(process, port)
    yield f"http://127.0.0.1:{port}/", port, line
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=20) == 128 + signal.SIGTERM
    assert process.stderr.read().strip() == "explore: stopped (SIGTERM)"


@pytest.fixture(scope="module")
def opened(page, browser):
    """The page in headless Chromium, started (its decoders loaded), and its console."""
    url = page[0]
    browser.get(url)
    ready = browser.execute_async_script(
        "const done = arguments[arguments.length - 1]; window.explore.ready.then(done);"
    )
    assert ready is True, browser.find_element("id", "status").text
    return browser


def decode_in_page(browser, model: str, vectors: list[list[float]]) -> np.ndarray:
    pixels = browser.execute_async_script(
        "const [model, vectors, done] = arguments;"
        "window.explore.decode(model, vectors).then((g) => done(g.map((x) => Array.from(x))));",
        model, vectors,
    )  # fmt: skip
    return np.array(pixels, np.float32)


def keras_decoder(project: Path, model: str):
    import keras

    import wardrobe.models.vae  # noqa: F401  (registers the VAE's classes)

    path = project / "models" / model / ("decoder.keras" if model == "ae" else "vae.keras")
    loaded = keras.models.load_model(path)
    return loaded if model == "ae" else loaded.decoder


def test_the_page_decodes_as_the_trained_keras_decoders_do(garments, opened):
    """The ONNX decoders in onnxruntime-web give the Keras decoders' images within 1e-4."""
    rng = np.random.default_rng(0)
    for model in ("ae", "vae"):
        data = json.loads((garments / "reports" / "explore" / f"{model}.json").read_text())
        spread = np.array(data["std"]) * 2
        vectors = (np.array(data["mean"]) + rng.normal(0, 1, (16, 2)) * spread).astype("float32")
        in_page = decode_in_page(opened, model, vectors.tolist())
        in_keras = keras_decoder(garments, model).predict(vectors, verbose=0).reshape(16, -1)
        assert in_page.shape == in_keras.shape == (16, 32 * 32)
        assert np.abs(in_page - in_keras).max() < 1e-4, model


def hover(browser, model: str, z: list[float]) -> None:
    """Move the pointer onto a model's plane at the latent point z."""
    from selenium.webdriver.common.action_chains import ActionChains

    plane = browser.find_element("css selector", f"#{model} .plane")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", plane)
    x, y = browser.execute_script("return window.explore.toScreen(arguments[0], arguments[1])",
                                  model, z)  # fmt: skip
    before = browser.execute_script("return window.explore.pointed")
    # from the element's centre, which is its content's (the border is even)
    width, height = browser.execute_script(
        "return [arguments[0].clientWidth, arguments[0].clientHeight]", plane
    )
    ActionChains(browser).move_to_element_with_offset(
        plane, round(x - width / 2), round(y - height / 2)
    ).perform()
    for _ in range(200):
        if browser.execute_script("return window.explore.pointed") != before:
            return
        time.sleep(0.02)
    raise AssertionError(f"moving onto the {model} plane decoded nothing")


def test_the_pointer_shows_the_garment_sewn_at_its_place(garments, opened):
    """The page loads without a console error; moving the pointer changes the garment, the
    same point decoded by both models; among the Trouser codes, where they are densest, both
    decoders sew a garment the project's classifier calls a trouser."""
    import keras

    errors = [e for e in opened.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [] and opened.execute_script("return window.explore.errors") == []
    legend = [li.text for li in opened.find_elements("css selector", "#legend li")]
    assert legend == list(CLASS_NAMES)
    classifier = keras.models.load_model(garments / "models" / "classifier" / "classifier.keras")
    for model in ("ae", "vae"):
        data = json.loads((garments / "reports" / "explore" / f"{model}.json").read_text())
        codes, labels = np.array(data["codes"]), np.array(data["labels"])
        # the Trouser code with the most Trouser codes among its 15 nearest
        trousers = codes[labels == TROUSER]
        near = np.argsort(((trousers[:, None] - codes[None]) ** 2).sum(-1), axis=1)[:, :15]
        densest = trousers[(labels[near] == TROUSER).sum(1).argmax()]
        hover(opened, model, [float(densest[0]) + 0.3, float(densest[1])])
        first = opened.execute_script("return Array.from(window.explore.decoded[arguments[0]])",
                                      model)  # fmt: skip
        hover(opened, model, densest.tolist())
        shown = {m: np.array(opened.execute_script(
            "return Array.from(window.explore.decoded[arguments[0]])", m), np.float32)
            for m in ("ae", "vae")}  # fmt: skip
        assert np.abs(shown[model] - np.array(first)).max() > 1e-3  # the garment changed
        # the point under the pointer (the pixel's), within a pixel of the densest code
        at = np.array(opened.execute_script("return window.explore.pointer"), np.float32)
        view = opened.execute_script("return window.explore.models[arguments[0]].view", model)
        assert np.abs(at - densest).max() <= 2 * view["half"] / 460 * 1.5
        for each in ("ae", "vae"):  # both decoders sew the garment at that point
            expected = keras_decoder(garments, each).predict(at[None], verbose=0).reshape(-1)
            assert np.abs(shown[each] - expected).max() < 1e-4, each
        called = classifier.predict(shown[model].reshape(1, 32, 32, 1), verbose=0).argmax()
        assert CLASS_NAMES[called] == "Trouser", (model, densest, CLASS_NAMES[called])
        caption = opened.find_element("css selector", f"#{model} .at").text
        assert caption == f"z = ({at[0]:.2f}, {at[1]:.2f})"


def test_two_pins_show_the_garments_along_the_line_between_them(garments, opened):
    from selenium.webdriver.common.action_chains import ActionChains

    plane = opened.find_element("css selector", "#vae .plane")
    for dx in (-120, 120):
        ActionChains(opened).move_to_element_with_offset(plane, dx, 40).click().perform()
    for _ in range(200):
        strips = {m: opened.find_elements("css selector", f'.strip[data-model="{m}"] canvas')
                  for m in ("ae", "vae")}  # fmt: skip
        if all(len(s) >= 10 for s in strips.values()):
            break
        time.sleep(0.02)
    assert all(len(s) >= 10 for s in strips.values()), {m: len(s) for m, s in strips.items()}
    line = opened.execute_script("return window.explore.line.vae.map((g) => Array.from(g))")
    assert len(line) >= 10 and np.abs(np.diff(np.array(line), axis=0)).max() > 1e-3
    if SCREENSHOT:  # the README's picture, made by this browser
        hover(opened, "vae", [0.5, 0.5])
        opened.save_screenshot(SCREENSHOT)


def test_the_server_answers_only_its_own_files_and_names(garments, page):
    _, port, line = page
    assert line.strip() == f"explore: http://127.0.0.1:{port}/ (reports/explore)"
    assert_answers_only_its_own_names(port, "/", ("/", b"{}"))
    own = f"127.0.0.1:{port}"
    status, body = ask(port, "GET", "/data/vae.onnx", own)
    assert status == 200 and body == (garments / "reports/explore/vae.onnx").read_bytes()
    for path in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/data/../params.yaml",
                 "/data/", "/explore.js/../../../mlflow.db", "/ort/ort.min.js"):  # fmt: skip
        assert ask(port, "GET", path, own)[0] == 404, path
    for method in ("POST", "PUT", "DELETE"):  # no endpoint writes
        assert ask(port, method, "/data/vae.json", own, body=b"x")[0] == 405, method
    assert (garments / "reports/explore/vae.json").stat().st_size > 0


def test_a_taken_port_or_missing_data_is_one_line(garments, page, tmp_path):
    _, port, _ = page
    taken = start(garments, port)
    assert taken.wait(timeout=60) == 1
    assert taken.stderr.read().strip() == (
        f"explore: error: port {port} on 127.0.0.1 (the wardrobe page) is already taken; stop "
        f"what uses it or set EXPLORE_PORT to a free port (e.g. make explore "
        f"EXPLORE_PORT={port + 1})"
    )
    empty = tmp_path / "project"
    empty.mkdir()
    (empty / "dvc.yaml").write_text("stages: {}\n")
    missing = start(empty, free_port())
    assert missing.wait(timeout=60) == 1
    assert missing.stderr.read().strip() == (
        f"explore: error: {empty}/reports/explore/ae.json: not found; run `dvc repro explore` "
        "(or `dvc pull explore`), then make explore"
    )
    champion = start(empty, free_port(), "--model", "champion")
    assert champion.wait(timeout=120) == 1
    lines = champion.stderr.read().strip().splitlines()
    assert len(lines) == 1 and "has no wardrobe-ae-decoder@champion; promote" in lines[0]


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """The tiny project (synthetic images) with both models at latent size 4, and stage
    explore's data of them."""
    from wardrobe.explore.data import export
    from wardrobe.params import load

    project = tmp_path_factory.mktemp("wide")
    with pytest.MonkeyPatch.context() as monkeypatch:
        enter_tiny_project(project, monkeypatch)
        write_params(project, project / "params.yaml", ae={"latent_dim": 4},
                     vae={"latent_dim": 4}, plots={"scatter_points": 100})  # fmt: skip
        for model in ("ae", "vae"):
            train(project, model)
        export(load(project / "params.yaml").plots, project / "models", project / "data",
               project / "reports/explore")  # fmt: skip
        yield project


def test_a_latent_size_above_two_shows_two_chosen_dimensions_and_sliders(wide, browser):
    """At latent size 4 each plane shows the two dimensions its selectors choose, and a
    slider sets each of the other two; the garment is the decoder's at the whole vector."""
    from selenium.webdriver.support.select import Select

    port = free_port()
    server = start(wide, port)
    try:
        wait_for(server, port)
        browser.get(f"http://127.0.0.1:{port}/")
        assert browser.execute_async_script(
            "const done = arguments[arguments.length - 1]; window.explore.ready.then(done);"
        )
        for model in ("ae", "vae"):
            sliders = browser.find_elements("css selector", f"#{model} .sliders input")
            assert [s.get_attribute("data-dim") for s in sliders] == ["2", "3"]
            Select(browser.find_element("css selector", f"#{model} select.dim1")).select_by_value(
                "3"
            )
            sliders = browser.find_elements("css selector", f"#{model} .sliders input")
            assert [s.get_attribute("data-dim") for s in sliders] == ["1", "2"]
            # a slider moved: the garment at the pointer is decoded at the new whole vector
            browser.execute_script(
                "const s = arguments[0]; s.value = s.max; s.dispatchEvent(new Event('input'));",
                sliders[0],
            )  # fmt: skip
            mean = json.loads((wide / "reports/explore" / f"{model}.json").read_text())["mean"]
            hover(browser, model, [mean[0], mean[3]])
            rest = browser.execute_script("return window.explore.models[arguments[0]].rest",
                                          model)  # fmt: skip
            z = [0.0] * 4
            z[0], z[3] = browser.execute_script("return window.explore.pointer")
            z[1], z[2] = rest[1], rest[2]
            assert z[1] == pytest.approx(float(sliders[0].get_attribute("max")))
            shown = np.array(browser.execute_script(
                "return Array.from(window.explore.decoded[arguments[0]])", model))  # fmt: skip
            expected = keras_decoder(wide, model).predict(
                np.array([z], np.float32), verbose=0).reshape(-1)  # fmt: skip
            assert np.abs(shown - expected).max() < 1e-4, model
        assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
