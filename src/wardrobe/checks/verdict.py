"""The data checks' verdict, as the training stages read it: they refuse to start unless the
validate stage's summary.json says every expectation passed *on the data they are given*
(the summary records DVC's hash of the processed directory it checked)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from wardrobe.dataset import data_digest
from wardrobe.errors import ChecksFailed

CHECKED_KEY = "processed_data"  # summary.json: DVC's hash of the directory, "<md5>.dir"


def require_passed(summary_path: str | os.PathLike[str], data_dir: str | os.PathLike[str]) -> str:
    """Raise ChecksFailed unless the data checks ran, passed, and checked exactly the data in
    data_dir; return its digest (`dataset.data_digest`), the one a training's run carries."""
    path = Path(summary_path)
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ChecksFailed(f"{path}: missing or unreadable; run `dvc repro validate`") from None
    if not isinstance(summary, dict):
        raise ChecksFailed(f"{path}: not a data-check summary; run `dvc repro validate`")
    if summary.get("success") is not True:
        failures = "; ".join(str(f) for f in summary.get("failures") or []) or "no details"
        raise ChecksFailed(
            f"{path}: the data checks failed ({failures}); "
            "fix the data and run `dvc repro validate` before training"
        )
    checked = summary.get(CHECKED_KEY)
    if not isinstance(checked, str):
        raise ChecksFailed(
            f"{path} does not say which data it checked (written by an older validate); "
            "run `dvc repro validate`"
        )
    try:
        digest = data_digest(data_dir)
    except OSError as exc:
        raise ChecksFailed(
            f"{exc.filename}: {exc.strerror}; run `dvc repro preprocess validate`"
        ) from None
    if digest != checked:
        raise ChecksFailed(
            f"{data_dir} is not the data the checks passed (DVC hash {digest[:12]}…, checked "
            f"{checked[:12]}…); run `dvc repro validate` to check it (or `dvc checkout` to "
            "restore the checked data)"
        )
    return digest
