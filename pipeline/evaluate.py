"""DVC stage `evaluate`: test-set reconstruction losses, latent statistics and generation
quality of both models, written to reports/metrics.json (DVC metrics) and logged into the
MLflow runs `ae`, `vae` and `classifier` that trained them."""

from __future__ import annotations

import argparse
from pathlib import Path

from wardrobe import tracking
from wardrobe.cli import run_stage
from wardrobe.data import load_split
from wardrobe.evaluation import evaluate_all, flatten_metrics
from wardrobe.fsio import write_json
from wardrobe.params import EvaluateParams, load_seed, read_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params (`evaluate`, `seed`)")
    parser.add_argument("--models", required=True, help="directory of ae/, vae/, classifier/")
    parser.add_argument("--data", required=True, help="directory of train.npz, test.npz")
    parser.add_argument("--out", required=True, help="metrics file (reports/metrics.json)")
    args = parser.parse_args()

    raw = read_params(args.params)
    tracking.check_reachable(tracking.tracking_uri())  # fail before the work, not after
    params, seed = EvaluateParams.from_raw(raw, args.params), load_seed(raw, args.params)
    test = load_split(Path(args.data) / "test.npz")
    train_images, _ = load_split(Path(args.data) / "train.npz")
    metrics, records = evaluate_all(
        args.models, test, train_images,
        generated=params.generated, batch_size=params.batch_size, seed=seed,
    )  # fmt: skip
    write_json(args.out, metrics)
    for name, record in records.items():
        tracking.log_to_recorded_run(record, flatten_metrics(metrics[name]))
    ae, vae = metrics["ae"]["test"], metrics["vae"]["test"]
    print(
        f"evaluate: AE test BCE {ae['bce']:.4f}, FD {ae['generation']['frechet_distance']:.2f}; "
        f"VAE test BCE {vae['bce']:.4f}, KL {vae['kl']:.2f}, "
        f"FD {vae['generation']['frechet_distance']:.2f}; "
        f"classifier accuracy {metrics['classifier']['test']['accuracy']:.4f}; "
        f"written to {args.out}"
    )


if __name__ == "__main__":
    run_stage("evaluate", main)
