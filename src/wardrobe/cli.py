"""What every stage script shares: logging set-up and the expected-error exit path."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable

from wardrobe.errors import WardrobeError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def configure_logging() -> None:
    """One line per step; `WARDROBE_LOG_LEVEL=DEBUG` shows more."""
    level = os.environ.get("WARDROBE_LOG_LEVEL", "INFO").upper()
    if level not in LOG_LEVELS:
        raise WardrobeError(
            f"WARDROBE_LOG_LEVEL={level!r} is not one of {', '.join(LOG_LEVELS)}; fix or unset it"
        )
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage's `main`; an expected error ends it with one line and exit status 1.

    SIGTERM (a cancelled CI job, a stopped DVC run) is handled like Ctrl-C, so MLflow runs
    end KILLED and temporary outputs are removed."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        configure_logging()
        main()
    except WardrobeError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{name}: interrupted; outputs were left as they were", file=sys.stderr)
        sys.exit(130)
