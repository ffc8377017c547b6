"""params.yaml -> typed, validated objects.

Each stage reads only its own section. A bad value raises `ParamsError` naming the dotted key
and the rule, e.g. "params.yaml: preprocess.limit_train must be a positive multiple of 10".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from wardrobe.errors import ParamsError

DEFAULT_PARAMS_PATH = Path("params.yaml")
NUM_CLASSES = 10

T = TypeVar("T")


class _Section:
    """Reads typed values from one mapping of params.yaml, naming keys by their dotted path."""

    def __init__(self, source: str, prefix: str, values: Any, known: set[str]) -> None:
        self.source, self.prefix = source, prefix
        if not isinstance(values, Mapping):
            self.fail("", f"must be a mapping of keys to values, got {values!r}")
        unknown = sorted(set(values) - known)
        if unknown:
            self.fail(unknown[0], f"is not a known key (known: {', '.join(sorted(known))})")
        missing = sorted(known - set(values))
        if missing:
            self.fail(missing[0], "is missing")
        self.values = values

    def fail(self, key: str, rule: str) -> None:
        dotted = f"{self.prefix}.{key}" if key else self.prefix
        raise ParamsError(f"{self.source}: {dotted} {rule}")

    def int(self, key: str, *, minimum: int | None = None, optional: bool = False) -> int | None:
        value = self.values[key]
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer{' or null' if optional else ''}, got {value!r}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be at least {minimum}, got {value}")
        return value

    def float(self, key: str, *, minimum: float | None = None) -> float:
        value = self.values[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, f"must be a number, got {value!r}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be at least {minimum}, got {value}")
        return float(value)

    def str(self, key: str, *, optional: bool = False) -> str | None:
        value = self.values[key]
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            self.fail(
                key, f"must be a non-empty string{' or null' if optional else ''}, got {value!r}"
            )
        return value

    def bool(self, key: str) -> bool:
        value = self.values[key]
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {value!r}")
        return value

    def choice(self, key: str, options: tuple[str, ...]) -> str:
        value = self.values[key]
        if value not in options:
            self.fail(key, f"must be one of {', '.join(options)}, got {value!r}")
        return value

    def filters(self, key: str) -> tuple[int, ...]:
        """Convolution filter counts, one per stride-2 layer: 32 must halve that many times."""
        value = self.values[key]
        if (
            not isinstance(value, list)
            or not 1 <= len(value) <= 5
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        ):
            self.fail(
                key,
                f"must be a list of 1 to 5 positive integers (one per stride-2 "
                f"convolution of the 32x32 input), got {value!r}",
            )
        return tuple(value)

    def str_list(self, key: str) -> tuple[str, ...]:
        value = self.values[key]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(key, f"must be a list of non-empty strings, got {value!r}")
        return tuple(value)

    def range(self, key: str) -> tuple[float, float]:
        value = self.values[key]
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            or value[0] > value[1]
        ):
            self.fail(
                key, f"must be a list [low, high] of two numbers with low <= high, got {value!r}"
            )
        return float(value[0]), float(value[1])


def _section(raw: Mapping[str, Any], name: str, cls: type, source: str) -> _Section:
    if name not in raw:
        raise ParamsError(f"{source}: section '{name}' is missing")
    return _Section(source, name, raw[name], {f.name for f in fields(cls)})


@dataclass(frozen=True)
class DataParams:
    """Where the fetch stage looks for the four canonical files, in order."""

    mirror: str | None  # a local directory holding the .gz files (Debian: dataset-fashion-mnist)
    urls: tuple[str, ...]  # base URLs tried after the mirror
    timeout_s: float  # per HTTP request
    retries: int  # extra attempts per URL after a transient failure

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any], source: str) -> DataParams:
        s = _section(raw, "data", cls, source)
        mirror = s.str("mirror", optional=True)
        return cls(
            mirror=os.path.expanduser(mirror) if mirror else None,
            urls=s.str_list("urls"),
            timeout_s=s.float("timeout_s", minimum=0.1),
            retries=s.int("retries", minimum=0),
        )


@dataclass(frozen=True)
class PreprocessParams:
    """Optional class-balanced subsets, for quick runs; null keeps the whole split."""

    limit_train: int | None
    limit_test: int | None

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any], source: str) -> PreprocessParams:
        s = _section(raw, "preprocess", cls, source)
        limits = {}
        for key in ("limit_train", "limit_test"):
            value = s.int(key, minimum=NUM_CLASSES, optional=True)
            if value is not None and value % NUM_CLASSES:
                s.fail(
                    key,
                    f"must be null or a multiple of {NUM_CLASSES} (the subset keeps "
                    f"the same number of images per class), got {value}",
                )
            limits[key] = value
        return cls(**limits)


@dataclass(frozen=True)
class ChecksParams:
    """Thresholds of the data checks (the validate stage)."""

    raw_train_count: int  # images in the canonical train split
    raw_test_count: int
    raw_pixel_range: tuple[float, float]  # allowed [min, max] of raw uint8 pixels
    processed_pixel_range: tuple[float, float]  # allowed [min, max] after scaling
    class_count_tolerance: float  # allowed relative deviation of a class's count from even
    examples: int  # offending image indices reported per failed expectation

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any], source: str) -> ChecksParams:
        s = _section(raw, "checks", cls, source)
        return cls(
            raw_train_count=s.int("raw_train_count", minimum=1),
            raw_test_count=s.int("raw_test_count", minimum=1),
            raw_pixel_range=s.range("raw_pixel_range"),
            processed_pixel_range=s.range("processed_pixel_range"),
            class_count_tolerance=s.float("class_count_tolerance", minimum=0.0),
            examples=s.int("examples", minimum=0),
        )


@dataclass(frozen=True)
class AEParams:
    """The autoencoder (stage train_ae)."""

    latent_dim: int
    filters: tuple[int, ...]  # encoder convolutions; the decoder mirrors them
    loss: str  # bce | mse
    learning_rate: float  # Adam
    epochs: int
    batch_size: int
    deterministic: bool  # TensorFlow op determinism: same seed, same metrics

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any], source: str) -> AEParams:
        s = _section(raw, "ae", cls, source)
        return cls(
            latent_dim=s.int("latent_dim", minimum=2),
            filters=s.filters("filters"),
            loss=s.choice("loss", ("bce", "mse")),
            learning_rate=_positive(s, "learning_rate"),
            epochs=s.int("epochs", minimum=1),
            batch_size=s.int("batch_size", minimum=1),
            deterministic=s.bool("deterministic"),
        )


@dataclass(frozen=True)
class VAEParams:
    """The variational autoencoder (stage train_vae)."""

    latent_dim: int
    filters: tuple[int, ...]
    beta: float  # weight of the reconstruction term against the KL term
    learning_rate: float
    epochs: int
    batch_size: int
    deterministic: bool

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any], source: str) -> VAEParams:
        s = _section(raw, "vae", cls, source)
        return cls(
            latent_dim=s.int("latent_dim", minimum=2),
            filters=s.filters("filters"),
            beta=_positive(s, "beta"),
            learning_rate=_positive(s, "learning_rate"),
            epochs=s.int("epochs", minimum=1),
            batch_size=s.int("batch_size", minimum=1),
            deterministic=s.bool("deterministic"),
        )


@dataclass(frozen=True)
class ClassifierParams:
    """The Fashion-MNIST classifier whose features score generated images (train_classifier)."""

    filters: tuple[int, ...]  # 3x3 convolutions, each followed by 2x2 max pooling
    features: int  # width of the feature layer the Frechet distance is computed on
    dropout: float  # before the softmax layer, in training
    learning_rate: float
    epochs: int
    batch_size: int
    min_accuracy: float  # the stage fails below this test accuracy: its features would mislead
    deterministic: bool

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any], source: str) -> ClassifierParams:
        s = _section(raw, "classifier", cls, source)
        params = cls(
            filters=s.filters("filters"),
            features=s.int("features", minimum=1),
            dropout=s.float("dropout", minimum=0.0),
            learning_rate=_positive(s, "learning_rate"),
            epochs=s.int("epochs", minimum=1),
            batch_size=s.int("batch_size", minimum=1),
            min_accuracy=s.float("min_accuracy", minimum=0.0),
            deterministic=s.bool("deterministic"),
        )
        if params.dropout >= 1:
            s.fail("dropout", f"must be below 1, got {params.dropout}")
        if params.min_accuracy > 1:
            s.fail("min_accuracy", f"must be at most 1, got {params.min_accuracy}")
        return params


@dataclass(frozen=True)
class EvaluateParams:
    """Test-set losses, latent statistics and generation quality (stage evaluate)."""

    generated: int  # images generated per model for the Frechet distance and class shares
    batch_size: int  # images per predict batch

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any], source: str) -> EvaluateParams:
        s = _section(raw, "evaluate", cls, source)
        return cls(
            generated=s.int("generated", minimum=2),
            batch_size=s.int("batch_size", minimum=1),
        )


@dataclass(frozen=True)
class PlotsParams:
    """The lecture's figures (stage plots)."""

    reconstructions: int  # test images shown over their reconstructions
    scatter_points: int  # test images embedded in the latent-space scatter plots
    samples: int  # points sampled and decoded in the generation figure
    grid_size: int  # the decoded grid spanning the latent space is grid_size x grid_size
    dpi: int  # pixels per inch of the PNG files

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any], source: str) -> PlotsParams:
        s = _section(raw, "plots", cls, source)
        return cls(
            reconstructions=s.int("reconstructions", minimum=1),
            scatter_points=s.int("scatter_points", minimum=1),
            samples=s.int("samples", minimum=1),
            grid_size=s.int("grid_size", minimum=2),
            dpi=s.int("dpi", minimum=20),
        )


def _positive(s: _Section, key: str) -> float:
    value = s.float(key)
    if value <= 0:
        s.fail(key, f"must be greater than 0, got {value}")
    return value


def load_seed(raw: Mapping[str, Any], source: str) -> int:
    """The top-level `seed`: every random draw of a training stage derives from it."""
    seed = raw.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ParamsError(f"{source}: seed must be a non-negative integer, got {seed!r}")
    return seed


def read_params(path: str | os.PathLike[str] = DEFAULT_PARAMS_PATH) -> dict[str, Any]:
    """The whole params file as plain data."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParamsError(
            f"{path}: not found; run from the project root or pass --params"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ParamsError(f"{path}: unreadable ({reason}); pass a readable YAML file") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ParamsError(f"{path}: not valid YAML{where}; fix the syntax") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: must be a mapping of sections, got {type(raw).__name__}")
    return raw


def load_section(
    from_raw: Callable[[Mapping[str, Any], str], T],
    path: str | os.PathLike[str] = DEFAULT_PARAMS_PATH,
) -> T:
    """Read `path` and build one section, e.g. `load_section(DataParams.from_raw)`."""
    return from_raw(read_params(path), str(path))
