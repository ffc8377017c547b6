"""The data checks' verdict, as the training stages read it: they refuse to start unless the
validate stage's summary.json says every expectation passed *on the data they are given*
(the summary records the SHA-256 of each processed split it checked)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from wardrobe.dataset import split_digests
from wardrobe.errors import ChecksFailed

CHECKED_KEY = "processed_sha256"  # summary.json: {"train.npz": sha256, "test.npz": sha256}


def require_passed(
    summary_path: str | os.PathLike[str], data_dir: str | os.PathLike[str]
) -> dict[str, str]:
    """Raise ChecksFailed unless the data checks ran, passed, and checked exactly the splits in
    data_dir; return their digests."""
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
    if not isinstance(checked, dict):
        raise ChecksFailed(
            f"{path} does not say which data it checked (written by an older validate); "
            "run `dvc repro validate`"
        )
    try:
        digests = split_digests(data_dir)
    except OSError as exc:
        raise ChecksFailed(
            f"{exc.filename}: {exc.strerror}; run `dvc repro preprocess validate`"
        ) from None
    for name, digest in digests.items():
        if checked.get(name) != digest:
            raise ChecksFailed(
                f"{Path(data_dir) / name} is not the data the checks passed (SHA-256 "
                f"{digest[:12]}…, checked {str(checked.get(name))[:12]}…); run `dvc repro "
                "validate` to check it (or `dvc checkout` to restore the checked data)"
            )
    return digests
