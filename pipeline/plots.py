"""DVC stage `plots`: the lecture's figures of both models as PNG files under
reports/figures/ae/ and reports/figures/vae/ (DVC plots), also logged as artifacts
(`figures/`) of the MLflow runs `ae` and `vae` that trained the models."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from wardrobe import tracking
from wardrobe.cli import run_stage
from wardrobe.data import load_split
from wardrobe.evaluation import load_trained
from wardrobe.fsio import atomic_dir
from wardrobe.params import PlotsParams, load_seed, read_params
from wardrobe.plots import draw_model_figures

log = logging.getLogger("plots")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params (`plots`, `seed`)")
    parser.add_argument("--models", required=True, help="directory of ae/ and vae/")
    parser.add_argument("--data", required=True, help="directory of test.npz")
    parser.add_argument("--out", required=True, help="figure directory (reports/figures)")
    args = parser.parse_args()

    raw = read_params(args.params)
    tracking.check_reachable(tracking.tracking_uri())  # fail before the work, not after
    params, seed = PlotsParams.from_raw(raw, args.params), load_seed(raw, args.params)
    images, labels = load_split(Path(args.data) / "test.npz")
    models = {name: load_trained(args.models, name) for name in ("ae", "vae")}
    for name, model in models.items():
        out = Path(args.out) / name
        with atomic_dir(out) as staging:
            drawn = draw_model_figures(model, images, labels, params, seed, staging)
        log.info("%s: %s written to %s", name, ", ".join(p.name for p in drawn), out)
        tracking.log_to_recorded_run(model.run, artifacts=out, artifact_path="figures")
    print(f"plots: figures written to {args.out}/ae and {args.out}/vae")


if __name__ == "__main__":
    run_stage("plots", main)
