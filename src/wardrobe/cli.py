"""What every stage script shares: its arguments, logging, and the expected-error exit path."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from wardrobe.errors import WardrobeError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Libraries that configure their own logging when imported read these: TensorFlow's C++ notice
# of CPU features and MLflow's run links are INFO, so show their warnings only.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def parse_args(
    argv: Sequence[str] | None, description: str | None, **paths: str
) -> argparse.Namespace:
    """`--params` (default params.yaml) and one required path option per keyword, whose value
    is its help text: `parse_args(argv, __doc__, out="model directory")` gives `args.out`
    (`class_shares=...` is the option --class-shares)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file")
    for name, help_text in paths.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=Path, required=True, help=help_text
        )
    return parser.parse_args(argv)


def configure_logging() -> None:
    """Wardrobe's own progress at INFO (`WARDROBE_LOG_LEVEL=DEBUG` shows more), every other
    library at WARNING."""
    level = os.environ.get("WARDROBE_LOG_LEVEL", "INFO").upper()
    if level not in LOG_LEVELS:
        raise WardrobeError(
            f"WARDROBE_LOG_LEVEL={level!r} is not one of {', '.join(LOG_LEVELS)}; fix or unset it"
        )
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("wardrobe").setLevel(level)
    # TensorFlow gives its logger a handler of its own when it is imported first: without it,
    # its warnings print once, in the same format as every other library's.
    logging.getLogger("tensorflow").handlers.clear()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_stage(
    name: str, main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None
) -> None:
    """Run a stage's `main(argv)`; an expected error ends it with one line and exit status 1.

    SIGTERM (a cancelled CI job, a stopped DVC run) is handled like Ctrl-C, so MLflow runs
    end KILLED and temporary outputs are removed."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        configure_logging()
        main(argv)
    except WardrobeError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{name}: interrupted; outputs were left as they were", file=sys.stderr)
        sys.exit(130)
