"""Great Expectations suites over the summary tables (`tables`) of raw and processed images.
Great Expectations evaluates them and renders Data Docs (made to open offline); the verdict
and every expectation's result go to summary.json."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wardrobe.checks.tables import shape_text, summarize_classes, summarize_images
from wardrobe.fsio import atomic_dir, write_json
from wardrobe.webassets import AssetsMissing, localize_site

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageExpectations:
    """What one split of images must look like."""

    name: str  # e.g. "processed/train"
    image_shape: tuple[int, ...]  # per image: (28, 28) raw, (32, 32, 1) processed
    dtype: str
    pixel_range: tuple[float, float]
    border: int  # width of the border that must be exactly 0; 0 = no border
    count: int
    num_classes: int
    class_count_tolerance: float  # allowed relative deviation of a class from count/num_classes

    @property
    def slug(self) -> str:
        return self.name.replace("/", "_")


def image_expectations(spec: ImageExpectations) -> list[Any]:
    import great_expectations as gx

    e = gx.expectations
    low, high = spec.pixel_range
    found = [
        e.ExpectTableRowCountToEqual(value=spec.count),
        e.ExpectColumnValuesToBeInSet(column="shape", value_set=[shape_text(spec.image_shape)]),
        e.ExpectColumnValuesToBeInSet(column="dtype", value_set=[spec.dtype]),
        e.ExpectColumnValuesToBeBetween(column="pixel_min", min_value=low, max_value=high),
        e.ExpectColumnValuesToBeBetween(column="pixel_max", min_value=low, max_value=high),
        e.ExpectColumnValuesToBeInSet(column="n_nan", value_set=[0]),
        e.ExpectColumnValuesToBeInSet(column="n_inf", value_set=[0]),
        e.ExpectColumnValuesToBeInSet(column="label", value_set=list(range(spec.num_classes))),
        e.ExpectColumnDistinctValuesToEqualSet(
            column="label", value_set=list(range(spec.num_classes))
        ),
    ]
    if spec.border:
        found.append(e.ExpectColumnValuesToBeInSet(column="border_abs_max", value_set=[0.0]))
    return found


def class_expectations(spec: ImageExpectations) -> list[Any]:
    import great_expectations as gx

    even = spec.count / spec.num_classes
    slack = spec.class_count_tolerance * even
    return [
        gx.expectations.ExpectColumnValuesToBeBetween(
            column="count", min_value=even - slack, max_value=even + slack
        )
    ]


def _describe(result: Any, table: str, examples: int) -> dict[str, Any]:
    """The part of a GX expectation result that a person needs to act on."""
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    outcome = result.result or {}
    entry: dict[str, Any] = {
        "table": table,
        "expectation": config.type,
        "kwargs": kwargs,
        "success": bool(result.success),
    }
    if "observed_value" in outcome:
        observed = outcome["observed_value"]
        entry["observed_value"] = observed.tolist() if hasattr(observed, "tolist") else observed
    if "unexpected_count" in outcome:
        entry["element_count"] = int(outcome.get("element_count", 0))
        entry["unexpected_count"] = int(outcome["unexpected_count"])
        index_list = outcome.get("partial_unexpected_index_list") or []
        rows = [
            next(iter(v for k, v in item.items() if k in ("image", "class")), None)
            if isinstance(item, dict) else item
            for item in index_list
        ]  # fmt: skip
        entry["unexpected_examples"] = [int(r) for r in rows[:examples] if r is not None]
    if result.exception_info and result.exception_info.get("raised_exception"):
        entry["exception"] = str(result.exception_info.get("exception_message"))
    return entry


def failure_line(entry: dict[str, Any]) -> str:
    """'raw/train images: expect_column_values_to_be_between(pixel_max) 3 of 60000, e.g. 1, 5'"""
    column = entry["kwargs"].get("column")
    text = f"{entry['table']}: {entry['expectation']}" + (f"({column})" if column else "")
    if "unexpected_count" in entry:
        text += f" failed for {entry['unexpected_count']} of {entry['element_count']} rows"
        if entry.get("unexpected_examples"):
            text += ", e.g. " + ", ".join(str(i) for i in entry["unexpected_examples"])
    elif "observed_value" in entry:
        text += f" observed {entry['observed_value']!r}"
    if "exception" in entry:
        text += f" raised {entry['exception']}"
    return text


def run_checks(
    batches: Sequence[tuple[ImageExpectations, np.ndarray, np.ndarray]],
    out_dir: str | os.PathLike[str],
    *,
    examples: int = 5,
    record: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate every (spec, images, labels) batch; write `summary.json` (with `record`'s
    entries, e.g. what the data was) and the HTML Data Docs to `out_dir` (replaced atomically)
    and return the summary."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    out_dir = Path(out_dir)
    result_format = {"result_format": "SUMMARY", "partial_unexpected_count": max(examples, 1)}
    entries: list[dict[str, Any]] = []
    with atomic_dir(out_dir) as staging, tempfile.TemporaryDirectory() as gx_root:
        context = gx.get_context(mode="file", project_root_dir=gx_root)
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = context.data_sources.add_pandas("fashion_mnist")
        definitions = []
        frames: dict[str, pd.DataFrame] = {}
        titles: dict[str, str] = {}
        for spec, images, labels in batches:
            tables = {
                "images": (summarize_images(images, labels, spec.border), image_expectations),
                "classes": (summarize_classes(labels, spec.num_classes), class_expectations),
            }
            for kind, (frame, build) in tables.items():
                name = f"{spec.slug}_{kind}"
                suite = context.suites.add(gx.ExpectationSuite(name=name))
                for expectation in build(spec):
                    suite.add_expectation(expectation)
                asset = source.add_dataframe_asset(name)
                batch = asset.add_batch_definition_whole_dataframe("whole")
                definitions.append(
                    context.validation_definitions.add(
                        gx.ValidationDefinition(name=name, data=batch, suite=suite)
                    )
                )
                frames[name] = frame
                titles[name] = f"{spec.name} {kind}"
        # One checkpoint per table: each run gets its own dataframe.
        for definition in definitions:
            checkpoint = context.checkpoints.add(
                gx.Checkpoint(
                    name=f"check_{definition.name}",
                    validation_definitions=[definition],
                    actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
                    result_format=result_format,
                )
            )
            outcome = checkpoint.run(batch_parameters={"dataframe": frames[definition.name]})
            table = titles[definition.name]
            for validation in outcome.run_results.values():
                entries += [_describe(r, table, examples) for r in validation.results]
            log.info("checked %s: %s", table, "ok" if outcome.success else "FAILED")
        site = Path(gx_root) / "gx" / "uncommitted" / "data_docs" / "local_site"
        shutil.copytree(site, staging / "data_docs")
        offline_data_docs(staging / "data_docs")
        failed = [e for e in entries if not e["success"]]
        summary = {
            "success": not failed,
            "evaluated": len(entries),
            "failed": len(failed),
            "failures": [failure_line(e) for e in failed],
            "data_docs": "data_docs/index.html",
            "tables": {
                spec.name: {"count": len(labels), "expected_count": spec.count}
                for spec, _, labels in batches
            },
            **(record or {}),
            "expectations": entries,
        }
        write_json(staging / "summary.json", summary)
    return summary


def offline_data_docs(site: Path) -> None:
    """Make the Data Docs load their scripts and styles from local copies; without them
    (no npm on this machine), say so and leave the public CDN links."""
    try:
        remote = localize_site(site)
    except AssetsMissing as exc:
        log.warning("%s; the Data Docs load their scripts from public CDNs meanwhile", exc)
        return
    if remote:
        log.warning("the Data Docs still load %s from the internet", ", ".join(remote))
