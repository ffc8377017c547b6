"""Training throughput: the pipeline's training loop against the lecture's plain `model.fit`.

In one process, on the same images and batch size, two copies of the same model train one
epoch at a time, alternating (which side goes first flips every round):
  baseline  the lecture's code: `model.fit(x, x, shuffle=True, validation_data=(x_val, x_val))`
            on NumPy arrays;
  pipeline  `wardrobe.training.loop.fit`: the tf.data input pipeline, the NaN watchdog, the epoch
            timer and per-epoch MLflow logging into a real (temporary SQLite) tracking store,
            inside an MLflow run.
Each measurement is the wall time of a whole one-epoch `fit` call (input pipeline, training,
validation, callbacks, tracking), reported as training images per second. A first epoch per
side traces the graphs and is not measured. This machine's speed drifts by 10-20% over tens of
seconds, so the verdict is the median of the per-round ratios pipeline/baseline: both sides of
a round ran within seconds of each other.

    python bench/training_throughput.py                  # AE, 6,000 images, 20 rounds
    python bench/training_throughput.py --model vae --deterministic off
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import keras
import tensorflow as tf

from wardrobe.dataset import load_split
from wardrobe.models.autoencoder import build_autoencoder
from wardrobe.models.vae import build_vae
from wardrobe.tracking.models import EpochMetrics
from wardrobe.tracking.runs import tracked_run
from wardrobe.tracking.store import configure
from wardrobe.training.loop import fit, seed_everything


def build(model: str) -> tuple[keras.Model, bool]:
    """A compiled lecture model and whether it trains on (x, x) pairs."""
    if model == "ae":
        autoencoder, _, _ = build_autoencoder(2, (32, 64, 128))
        autoencoder.compile(optimizer=keras.optimizers.Adam(0.001), loss="binary_crossentropy")
        return autoencoder, True
    vae, _, _ = build_vae(2, (32, 64, 128), beta=500.0, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(0.0005))
    return vae, False


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=("ae", "vae"), default="ae")
    parser.add_argument("--data", default="data/processed", help="train.npz, test.npz")
    parser.add_argument("--images", type=int, default=6000, help="training images per epoch")
    parser.add_argument("--val-images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20, help="measured epochs per side")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument(
        "--deterministic", choices=("on", "off"), default="on",
        help="TF op determinism for both sides (the pipeline's default: on)",
    )  # fmt: skip
    parser.add_argument("--out", default="bench/out/training_throughput.json")
    args = parser.parse_args()

    x, _ = load_split(Path(args.data) / "train.npz")
    x_val, _ = load_split(Path(args.data) / "test.npz")
    x, x_val = x[: args.images], x_val[: args.val_images]
    seed_everything(0, args.deterministic == "on")
    store = tempfile.mkdtemp(prefix="wardrobe-bench-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    configure(experiment="bench")

    baseline_model, autoencoding = build(args.model)
    pipeline_model, _ = build(args.model)
    validation = (x_val, x_val) if autoencoding else (x_val,)

    def baseline(epoch: int) -> None:
        targets = {"y": x} if autoencoding else {}
        baseline_model.fit(x, **targets, batch_size=args.batch_size, epochs=1, shuffle=True,
                           validation_data=validation, verbose=0)  # fmt: skip

    def pipeline(epoch: int) -> None:
        fit(pipeline_model, (x, None), (x_val, None), epochs=1, batch_size=args.batch_size,
            seed=epoch, target="images" if autoencoding else None,
            callbacks=[EpochMetrics()], verbose=0)  # fmt: skip

    sides = {"baseline": baseline, "pipeline": pipeline}
    rates: dict[str, list[float]] = {"baseline": [], "pipeline": []}
    with tracked_run("bench", {"model": args.model}, {"bench": "true"}):
        for side in sides.values():
            side(0)  # tracing
        for r in range(args.rounds):
            order = ("baseline", "pipeline") if r % 2 == 0 else ("pipeline", "baseline")
            got = {}
            for name in order:
                start = time.perf_counter()
                sides[name](r + 1)
                got[name] = len(x) / (time.perf_counter() - start)
                rates[name].append(got[name])
            print(f"round {r + 1:2d}: baseline {got['baseline']:6,.0f}  pipeline "
                  f"{got['pipeline']:6,.0f} images/s  ratio "
                  f"{got['pipeline'] / got['baseline']:.3f}", flush=True)  # fmt: skip

    ratios = [p / b for p, b in zip(rates["pipeline"], rates["baseline"], strict=True)]
    result = {
        "model": args.model,
        "images": len(x),
        "val_images": len(x_val),
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "deterministic": args.deterministic == "on",
        "baseline_images_per_second": round(statistics.median(rates["baseline"]), 1),
        "pipeline_images_per_second": round(statistics.median(rates["pipeline"]), 1),
        "ratio": round(statistics.median(ratios), 4),
        "ratio_quartiles": [round(q, 4) for q in statistics.quantiles(ratios, n=4)],
        "per_round": rates,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }
    print(
        f"{args.model}: baseline {result['baseline_images_per_second']:,.0f} images/s, "
        f"pipeline {result['pipeline_images_per_second']:,.0f} images/s, ratio "
        f"{result['ratio']:.3f} (median of {args.rounds} rounds; quartiles "
        f"{result['ratio_quartiles'][0]:.3f}-{result['ratio_quartiles'][2]:.3f}; "
        f"determinism {args.deterministic})"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
