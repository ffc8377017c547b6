"""The wardrobe page's speed in headless Chromium (WebAssembly, one thread) on this CPU.

Starts `python -m wardrobe.explore` on a free port over a project's stage-explore data (the
workspace's models after `make repro`), opens the page `--loads` times, and measures in the
page itself (performance.now()):
  usable     from the navigation's start to the page started: both ONNX decoders loaded, the
             planes drawn, the first garments decoded and painted (target: <= 2,000 ms);
  garment    one pointer position: both decoders' garment at one latent point, decoded and
             painted (explore.pointAt), over `--points` random points (target: <= 16 ms, a
             frame at 60 Hz);
  decode     one decoder run on one latent vector, without painting;
  line       the garments along the line between two pins: 12 points, both models, decoded
             and painted (target: <= 100 ms for 10).
Medians and the 95th percentile over the points; the minimum over loads for `usable`.

    python bench/explore.py --project .                       # after make repro
    python bench/explore.py --project . --screenshot docs/figures/explore.png
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
MEASURE = """
const [points, done] = arguments;
(async () => {
  const ex = window.explore;
  const rnd = (m) => {
    const d = ex.models[m].data;
    return d.mean.map((v, i) => v + (Math.random() * 2 - 1) * 2 * d.std[i]);
  };
  const garment = [], decode = [], line = [];
  for (let i = 0; i < points; i++) {
    const z = rnd("vae");
    let t = performance.now();
    await ex.pointAt([z[0], z[1]]);
    garment.push(performance.now() - t);
    t = performance.now();
    await ex.decode("vae", [z]);
    decode.push(performance.now() - t);
  }
  for (let i = 0; i < Math.max(5, points / 20); i++) {
    ex.pins = [];
    const t = performance.now();
    await ex.pin(rnd("vae").slice(0, 2));
    await ex.pin(rnd("vae").slice(0, 2));
    line.push(performance.now() - t);
  }
  done({garment, decode, line, errors: ex.errors});
})();
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1400,1150", "--disable-gpu", "--disable-background-networking",
                 "--no-first-run"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--screenshot", type=Path, help="save the page, pointed at, as PNG")
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "wardrobe.explore", "--port", str(port)], cwd=args.project,
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    driver = None
    try:
        line = server.stdout.readline()
        if not line.startswith("explore: http"):
            sys.exit(f"explore did not start: {line!r}")
        driver = browser()
        usable, results = [], {"garment": [], "decode": [], "line": []}
        for _ in range(args.loads):
            driver.get(f"http://127.0.0.1:{port}/")
            ok = driver.execute_async_script(
                "const done = arguments[arguments.length - 1]; window.explore.ready.then(done);"
            )
            if not ok:
                sys.exit(f"the page did not start: {driver.find_element('id', 'status').text}")
            usable.append(driver.execute_script("return window.explore.timings.sinceNavigation"))
            measured = driver.execute_async_script(MEASURE, args.points)
            if measured["errors"]:
                sys.exit(f"the page reported errors: {measured['errors']}")
            for key in results:
                results[key] += measured[key]
        if args.screenshot:
            driver.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "window.explore.pins = [];"
                "window.explore.pin([-1.5, -0.5]).then(() => window.explore.pin([1.5, 0.5]))"
                ".then(() => window.explore.pointAt([0.4, -0.9])).then(done);"
            )
            driver.save_screenshot(str(args.screenshot))
        data = json.loads((args.project / "reports/explore/vae.json").read_text())
        print(f"explore bench: {args.loads} loads, {args.points} points each; VAE latent size "
              f"{data['latent_dim']}, {len(data['codes'])} codes a plane")  # fmt: skip
        print(
            f"  usable after load: min {min(usable):.0f} ms, max {max(usable):.0f} ms "
            "(target <= 2000)"
        )
        for key, label, target in (
            ("garment", "one garment, both models, painted", 16),
            ("decode", "one decoder run, one vector", None),
            ("line", "the line of 12, both models, painted", 100),
        ):
            values = results[key]
            goal = f" (target <= {target})" if target else ""
            print(
                f"  {label}: median {quantile(values, 0.5):.2f} ms, p95 "
                f"{quantile(values, 0.95):.2f} ms, max {max(values):.2f} ms{goal}"
            )
    finally:
        if driver is not None:
            driver.quit()
        with_group = server.pid
        os.killpg(with_group, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(with_group, signal.SIGKILL)


if __name__ == "__main__":
    main()
