"""What every stage script shares: logging set-up and the expected-error exit path."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from wardrobe.errors import WardrobeError


def configure_logging() -> None:
    """One line per step; `WARDROBE_LOG_LEVEL=DEBUG` shows more."""
    level = os.environ.get("WARDROBE_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage's `main`; an expected error ends it with one line and exit status 1."""
    configure_logging()
    try:
        main()
    except WardrobeError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{name}: interrupted; outputs were left as they were", file=sys.stderr)
        sys.exit(130)
