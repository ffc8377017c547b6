"""The data checks' verdict, as the training stages read it: they refuse to start unless the
validate stage's summary.json says every expectation passed."""

from __future__ import annotations

import json
import os
from pathlib import Path

from wardrobe.errors import ChecksFailed


def require_passed(summary_path: str | os.PathLike[str]) -> None:
    """Raise ChecksFailed unless the data checks ran and passed."""
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
