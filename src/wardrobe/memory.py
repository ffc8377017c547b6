"""Whether one batch fits in memory, asked before TensorFlow tries.

TensorFlow on the CPU does not recover from a failed allocation: asked for a tensor larger than
the memory left (a `batch_size` of 60,000 full images), it raises ResourceExhaustedError and the
process then dies of SIGSEGV as it unwinds, so no handler runs and the run stays RUNNING.
`require_batch_fits` therefore estimates what one batch needs, from the model's own layer
output sizes, and stops the stage with one line before the first step when the memory that is
free (the cgroup's limit counts, as in a container) is short of it.

The estimate: 4 bytes for each value the layers output for one sample, times the batch, times
a factor (training keeps every output for the backward pass and makes a gradient for it;
inference frees them as it goes), plus the weights (x 4 in training: the weights, their
gradients and Adam's two moments). Measured on the reference machine, TensorFlow took 4.0 GiB
for a training batch of 8,000 images of the AE (estimate 4.8) and 3.2 GiB to predict 20,000 with
the classifier's features (estimate 5.0): the estimate errs on the side of stopping.
Beyond the batch, a stage takes START_BYTES more as its first step runs (TensorFlow's runtime,
the traced step, the input pipeline): in a 2 GiB cgroup, each training stage's peak at batch
0 (extrapolated from 200 and 2,000 images) was 0.17-0.24 GiB above what it used at the check.
The size a refusal suggests ("about N fits") leaves FIT_MARGIN of what remains unused:
tests/test_faults.py trains each stage at that size in the limit that refused the larger one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from wardrobe.errors import WardrobeError

TRAINING_FACTOR = 2.0  # outputs kept for backprop, and their gradients
INFERENCE_FACTOR = 1.0  # outputs, freed layer by layer, and the ops' workspace
BYTES_PER_VALUE = 4  # float32
GIB = 2**30
START_BYTES = GIB // 4  # what a stage takes as its first step runs, beyond the batch
FIT_MARGIN = 0.1  # of the memory left, kept free by the suggested batch size


class OutOfMemory(WardrobeError):
    """One batch would need more memory than is free."""


def layer_values(model: Any) -> int:
    """Values one sample makes as it passes through `model`: the sum of its layers' output
    sizes, nested models (a VAE's encoder and decoder) included."""
    total = 0
    for layer in getattr(model, "layers", []):
        if getattr(layer, "layers", None):  # a model inside the model
            total += layer_values(layer)
            continue
        try:
            outputs = layer.output
        except (AttributeError, ValueError):  # a layer of a subclassed model has no symbol
            continue
        for output in outputs if isinstance(outputs, list | tuple) else [outputs]:
            total += math.prod(d for d in output.shape[1:] if d is not None)
    return total


def free_bytes() -> int:
    """Memory this process may still take: what the machine has available, or less where its
    memory cgroup (a container's limit; v2 or v1) allows less."""
    import psutil

    free = psutil.virtual_memory().available
    for limit, used in _cgroup_files():
        try:
            maximum = limit.read_text().strip()
            if maximum != "max" and int(maximum) < 2**60:  # v1 writes "no limit" as ~2**63
                free = min(free, int(maximum) - int(used.read_text()))
        except (OSError, ValueError):
            continue
    return max(free, 0)


def _cgroup_files() -> list[tuple[Path, Path]]:
    """(limit, usage) files of this process's memory cgroups, v2 and v1."""
    found = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and controllers == "":
            group = Path("/sys/fs/cgroup") / path.lstrip("/")
            found.append((group / "memory.max", group / "memory.current"))
        elif "memory" in controllers.split(","):
            group = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            found.append((group / "memory.limit_in_bytes", group / "memory.usage_in_bytes"))
    return found


def batch_cost(model: Any, training: bool) -> tuple[int, int]:
    """(bytes per sample, bytes whatever the batch) of one batch through `model`."""
    factor = TRAINING_FACTOR if training else INFERENCE_FACTOR
    weights = model.count_params() * BYTES_PER_VALUE * (4 if training else 1)
    return int(layer_values(model) * BYTES_PER_VALUE * factor), weights


def batch_bytes(model: Any, batch: int, training: bool) -> int:
    """The estimated memory one batch of `batch` samples needs through `model`."""
    per_sample, fixed = batch_cost(model, training)
    return batch * per_sample + fixed


def require_batch_fits(
    model: Any, batch_size: int, samples: int, param: str, training: bool = True
) -> None:
    """An OutOfMemory line naming `param` (e.g. "ae.batch_size") and the largest batch that
    fits, when one batch of min(batch_size, samples) would not fit in the free memory."""
    batch = max(min(batch_size, samples), 1)
    per_sample, fixed = batch_cost(model, training)
    fixed += START_BYTES
    needed, free = batch * per_sample + fixed, free_bytes()
    if needed <= free:
        return
    fits = max(int((free - fixed) * (1 - FIT_MARGIN)) // max(per_sample, 1), 0)
    raise OutOfMemory(
        f"out of memory: one batch of {batch} images ({param}) needs about "
        f"{needed / GIB:.1f} GiB {'to train' if training else 'to predict'} and "
        f"{free / GIB:.1f} GiB is free; lower {param} (about {fits} fits here) or free memory, "
        "then run the stage again"
    )
