"""params.yaml as typed, validated, frozen objects: one pydantic model per section.

What each key means is written once, in params.yaml's comments; this module holds the types and
the rules. `load` reads the whole file; a bad value raises `ParamsError` with one line naming
the dotted key and the rule, e.g. "params.yaml: preprocess.limit_train must be null or a
multiple of 10, got 15".
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from wardrobe.errors import ParamsError

NUM_CLASSES = 10


class Section(BaseModel):
    # strict: no silent coercion (true is not 1, "5" is not 5); finite numbers only.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


# One stride-2 convolution per entry: 32 halves at most five times.
Filters = Annotated[
    tuple[Annotated[StrictInt, Field(gt=0, le=1024)], ...],
    Field(strict=False, min_length=1, max_length=5),
]
Range = Annotated[tuple[float, float], Field(strict=False)]
NonEmpty = Annotated[str, Field(min_length=1)]
Subset = Annotated[int, Field(ge=NUM_CLASSES, multiple_of=NUM_CLASSES)]
LearningRate = Annotated[float, Field(gt=0, le=1)]
Epochs = Annotated[int, Field(ge=1, le=1000)]
BatchSize = Annotated[int, Field(ge=1, le=60_000)]


class DataParams(Section):
    mirror: NonEmpty | None
    urls: Annotated[tuple[NonEmpty, ...], Field(strict=False)]
    timeout_s: float = Field(ge=0.1, le=3600)
    retries: int = Field(ge=0, le=10)

    @field_validator("mirror")
    @classmethod
    def expand_home(cls, mirror: str | None) -> str | None:
        return os.path.expanduser(mirror) if mirror else None


class PreprocessParams(Section):
    limit_train: Subset | None
    limit_test: Subset | None


class ChecksParams(Section):
    raw_train_count: int = Field(ge=1)
    raw_test_count: int = Field(ge=1)
    raw_pixel_range: Range
    processed_pixel_range: Range
    class_count_tolerance: float = Field(ge=0)
    examples: int = Field(ge=0, le=1000)

    @field_validator("raw_pixel_range", "processed_pixel_range")
    @classmethod
    def ordered(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        if bounds[0] > bounds[1]:
            raise ValueError("must be [low, high] with low <= high")
        return bounds


class TrainingParams(Section):
    """What every training stage's section has."""

    learning_rate: LearningRate
    epochs: Epochs
    batch_size: BatchSize
    deterministic: bool


class AEParams(TrainingParams):
    latent_dim: int = Field(ge=2, le=512)  # the figures draw two dimensions
    filters: Filters
    loss: Literal["bce", "mse"]


class VAEParams(TrainingParams):
    latent_dim: int = Field(ge=2, le=512)
    filters: Filters
    beta: float = Field(gt=0, le=1e6)


class ClassifierParams(TrainingParams):
    filters: Filters
    features: int = Field(ge=1, le=4096)
    dropout: float = Field(ge=0, lt=1)
    min_accuracy: float = Field(ge=0, le=1)


# The fewest generated images the metrics take: the k-NN metrics need one more image than their
# neighbours (wardrobe.metrics.NEIGHBOURS, 5), and KID two per subset. (A constant here, not an
# import: every stage reads params.py, and would otherwise re-run on a change to metrics.py.)
MIN_GENERATED = 6


class EvaluateParams(Section):
    generated: int = Field(ge=MIN_GENERATED, le=100_000)
    batch_size: BatchSize


class PlotsParams(Section):
    reconstructions: int = Field(ge=1, le=50)
    scatter_points: int = Field(ge=1, le=10_000)
    samples: int = Field(ge=1, le=100)
    grid_size: int = Field(ge=2, le=50)
    dpi: int = Field(ge=20, le=600)


class Params(Section):
    """The whole of params.yaml."""

    seed: int = Field(ge=0, le=2**32 - 1)
    data: DataParams
    preprocess: PreprocessParams
    checks: ChecksParams
    ae: AEParams
    vae: VAEParams
    classifier: ClassifierParams
    evaluate: EvaluateParams
    plots: PlotsParams


class DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping that names one key twice (PyYAML would keep the last, silently)."""


class YAML12Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading plain scalars as YAML 1.2 (and DVC, which writes `-S`
    values into params.yaml) does: `1e-12` and `5e-4` are numbers, `yes` and `off` strings.
    A key given twice in one mapping is an error, as YAML says, not the last one winning."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                raise DuplicateKey(None, None, f"{key} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


YAML12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in found if tag != "tag:yaml.org,2002:bool"]
    for first, found in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YAML12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
YAML12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse(text: str) -> Any:
    """YAML text (params.yaml, a sweep file) as params.yaml's readers read it."""
    return yaml.load(text, Loader=YAML12Loader)


def load(path: str | os.PathLike[str] = "params.yaml") -> Params:
    """Read and validate the params file; raise ParamsError with one line on any problem."""
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
        raw = parse(text)
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: {syntax_error(exc)}") from None
    return validate(raw, str(path))


def syntax_error(exc: yaml.YAMLError) -> str:
    """'not valid YAML at line 3; fix the syntax': what `parse` refused, and where."""
    mark = getattr(exc, "problem_mark", None)
    at = f" at line {mark.line + 1}" if mark else ""
    if isinstance(exc, DuplicateKey):
        return f"{exc.problem}{at}; keep one of them"
    return f"not valid YAML{at}; fix the syntax"


def validate(raw: Any, where: str) -> Params:
    """The params in `raw` (params.yaml as parsed), or ParamsError with one line that starts
    with `where` (the file, or a sweep's point)."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{where}: must be a mapping of sections, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(f"{where}: {describe(exc.errors()[0])}") from None
    problem = across_sections(params)
    if problem:
        raise ParamsError(f"{where}: {problem}")
    return params


def across_sections(params: Params) -> str | None:
    """A rule that ties keys of two sections, broken, as one line (else None): each model's
    latent size stays below the number of test images, whose embeddings evaluate fits a
    Gaussian to (with fewer images than dimensions the fit is degenerate)."""
    test_images = params.preprocess.limit_test or params.checks.raw_test_count
    for name in ("ae", "vae"):
        dim = getattr(params, name).latent_dim
        if dim >= test_images:
            return (
                f"{name}.latent_dim must be less than the test images ({test_images}, "
                f"preprocess.limit_test): evaluate fits a Gaussian to their embeddings, got {dim}"
            )
    return None


# How pydantic's error types read as rules; {name} takes the error's context.
RULES = {
    "missing": "is missing",
    "extra_forbidden": "is not a known key (known: {known})",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "multiple_of": "must be null or a multiple of {multiple_of}",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "string_too_short": "must be a non-empty string",
    "literal_error": "must be one of {expected}",
    "tuple_type": "must be a list",
    "too_short": "must be a list of at least {min_length} items",
    "too_long": "must be a list of at most {max_length} items",
    "model_type": "must be a mapping of keys to values",
    "model_attributes_type": "must be a mapping of keys to values",
}


def describe(error: Any) -> str:
    """'ae.filters[0] must be greater than 0, got -3': one pydantic error as one line."""
    loc = error["loc"]
    dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    context = {k: round_number(v) for k, v in (error.get("ctx") or {}).items()}
    if error["type"] == "extra_forbidden":
        context["known"] = ", ".join(sorted(section_of(loc[:-1]).model_fields))
    if error["type"] == "value_error":
        rule = str(context.get("error", error["msg"]))
    elif error["type"] in RULES:
        rule = RULES[error["type"]].format(**context)
    else:
        rule = error["msg"][0].lower() + error["msg"][1:]
    if error["type"] == "missing":
        return f"{dotted} {rule}"
    return f"{dotted} {rule}, got {error['input']!r}"


def round_number(value: Any) -> Any:
    """0.0 -> 0: bounds read as they are written in this module."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def section_of(loc: tuple[Any, ...]) -> type[BaseModel]:
    """The model class that validates the mapping at `loc` (() is the whole file)."""
    model: type[BaseModel] = Params
    for part in loc:
        model = model.model_fields[part].annotation
    return model
