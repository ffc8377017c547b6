"""Stage `explore`: each model's decoder as ONNX and the page's data, in reports/explore/.

For each model (ae, vae), `<model>.onnx` is the trained Keras decoder exported by Keras 3
(`Model.export(format="onnx")`, tf2onnx underneath): latent vectors (batch, latent_dim) to
images (batch, 32, 32, 1). `<model>.json` holds what the page draws: the first
`plots.scatter_points` test images' codes (the VAE's z_mean: where each image sits) with their
labels and the class names, the region the latent-grid figure spans (`plots.grid_size`: the
AE's embeddings' range, the VAE's normal quantiles), the codes' mean and spread, and the
ONNX graph's input and output names. The directory is replaced whole, once both are written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from wardrobe.dataset import CLASS_NAMES, load_split
from wardrobe.errors import DataError
from wardrobe.fsio import atomic_dir
from wardrobe.params import PlotsParams
from wardrobe.plots import grid_axes
from wardrobe.processes import uninterrupted
from wardrobe.trained import TrainedModel, load_trained

log = logging.getLogger(__name__)

MODELS = ("ae", "vae")
BATCH = 500
DIGITS = 4  # decimals of the codes in the JSON: far below a pixel of the page's planes


def export_decoder(model: TrainedModel, path: Path) -> dict[str, str]:
    """The decoder as ONNX at `path`; its graph's input and output names."""
    import onnx

    decoder = model.decoder
    decoder(np.zeros((1, model.latent_dim), np.float32))  # Keras exports a model it has run
    with (
        open(os.devnull, "w") as quiet,
        contextlib.redirect_stdout(quiet),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", FutureWarning)  # tf2onnx's `np.object` probe
        decoder.export(str(path), format="onnx", verbose=False)
    graph = onnx.load(str(path)).graph
    return {"input": graph.input[0].name, "output": graph.output[0].name}


def page_data(model: TrainedModel, images: np.ndarray, labels: np.ndarray,
              params: PlotsParams, names: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    n = min(params.scatter_points, len(images))
    codes = model.encode(images[:n], BATCH, np.random.default_rng(0))
    z = codes.get("z_mean", codes["z"])
    xs, ys = grid_axes(model, codes["z"], params.grid_size)
    return {
        "model": model.name,
        "variational": model.variational,
        "beta": model.beta,
        "latent_dim": model.latent_dim,
        "image_shape": list(images.shape[1:3]),
        "classes": list(CLASS_NAMES),
        "codes": np.round(z, DIGITS).tolist(),
        "labels": labels[:n].astype(int).tolist(),
        "mean": np.round(z.mean(axis=0), DIGITS).tolist(),
        "std": np.round(z.std(axis=0), DIGITS).tolist(),
        "low": np.round(z.min(axis=0), DIGITS).tolist(),
        "high": np.round(z.max(axis=0), DIGITS).tolist(),
        # the latent-grid figure's region, in the first two dimensions
        "grid": {
            "x": [float(xs[0]), float(xs[-1])],
            "y": [float(ys[0]), float(ys[-1])],
            "size": params.grid_size,
        },
        "onnx": {"file": f"{model.name}.onnx", **names},
        "run_id": model.run.get("run_id"),
    }


def export(
    params: PlotsParams,
    models_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
) -> list[Path]:
    """Write both models' ONNX decoders and page data into out_dir (replaced whole)."""
    images, labels = load_split(Path(data_dir) / "test.npz")
    models = [load_trained(models_dir, name) for name in MODELS]
    with contextlib.ExitStack() as writing, atomic_dir(out_dir) as staging:
        for model in models:
            try:
                names = export_decoder(model, staging / f"{model.name}.onnx")
            except Exception as exc:  # tf2onnx raises many types
                raise DataError(
                    f"models/{model.name}: the decoder cannot be exported to ONNX ({exc}); "
                    f"run `dvc repro -f train_{model.name}`"
                ) from None
            data = page_data(model, images, labels, params, names)
            (staging / f"{model.name}.json").write_text(json.dumps(data, separators=(",", ":")))
        writing.enter_context(uninterrupted("writing the page's data"))
    out = Path(out_dir)
    written = sorted(out.iterdir())
    log.info("explore: %s written to %s", ", ".join(p.name for p in written), out)
    return written
