"""What every stage script shares: its arguments, logging, and the expected-error exit path."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from wardrobe import processes
from wardrobe.errors import WardrobeError, first_line, os_error_line

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Libraries that configure their own logging when imported read these: TensorFlow's C++ notice
# of CPU features and MLflow's run links are INFO, so show their warnings only.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def parse_args(
    argv: Sequence[str] | None,
    description: str | None,
    choices: Mapping[str, Sequence[str]] | None = None,
    **paths: str,
) -> argparse.Namespace:
    """`--params` (default params.yaml), one required option per `choices` entry that takes one
    of its values (`choices={"model": ("ae", "vae")}` gives `args.model`), and one required
    path option per keyword, whose value is its help text: `parse_args(argv, __doc__,
    out="model directory")` gives `args.out` (`class_shares=...` is the option
    --class-shares)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file")
    for name, values in (choices or {}).items():
        parser.add_argument(f"--{name.replace('_', '-')}", choices=values, required=True)
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


def _save_traceback(name: str) -> str:
    """Write the current exception's traceback to a file; return where (or why not)."""
    try:
        fd, path = tempfile.mkstemp(prefix=f"wardrobe-{name}-", suffix=".traceback")
        with os.fdopen(fd, "w") as fh:
            traceback.print_exc(file=fh)
    except OSError as exc:
        return f"could not be saved: {exc.strerror}"
    return f"in {path}"


def _exit(code: int) -> NoReturn:
    """Exit now, without waiting for library threads (TensorFlow's and tf.data's can hold an
    interrupted process for a minute): the stage's own clean-up has already run."""
    with contextlib.suppress(Exception):  # e.g. a reader that went away
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def run_stage(
    name: str, main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None
) -> None:
    """Run a stage's `main(argv)`; every failure ends it with one line on stderr.

    - An expected error (WardrobeError) prints its message; exit status 1.
    - Any other exception prints its type and first line and saves the traceback to a file
      (`WARDROBE_LOG_LEVEL=DEBUG` prints it too); exit status 1. An OSError or a MemoryError
      also names the fix.
    - Ctrl-C or SIGTERM (a cancelled CI job, a stopped DVC run) ends MLflow runs KILLED and
      removes temporary outputs; exit status 130 (`processes.handle_interrupts`: none is
      lost). Under DVC (DVC_STAGE names the stage) the stage also gets SIGTERM when its `dvc`
      dies (`processes.die_with_parent`): a killed `dvc repro` does not leave a training
      running that would write what dvc.lock never records. A stage run by hand (e.g. under
      nohup) outlives its shell.

    Both are set up before `main` runs, so a stage script imports TensorFlow and MLflow (which
    take seconds) inside its `main`.
    """
    processes.handle_interrupts()
    if os.environ.get("DVC_STAGE"):
        processes.die_with_parent()
    try:
        configure_logging()
        main(argv)
    except KeyboardInterrupt:
        _interrupted(name)
    except Exception as exc:
        if processes.interrupted():  # C code an interrupt cut short raised this instead
            _interrupted(name)
        print(f"{name}: error: {_error_line(name, exc)}", file=sys.stderr)
        _exit(1)


def _interrupted(name: str) -> NoReturn:
    """The interrupted stage's line, then exit 130. DVC deletes a stage's outputs before it
    runs it (DVC_STAGE names the stage it runs): the line says how to get them back."""
    restore = (
        f"its outputs were not written; `dvc checkout {os.environ['DVC_STAGE']}` restores "
        "the ones dvc.lock records"
        if os.environ.get("DVC_STAGE")
        else "its outputs were left as they were"
    )
    processes.interrupt_reached()
    print(f"{name}: interrupted; {restore}", file=sys.stderr)
    _exit(130)


def _error_line(name: str, exc: Exception) -> str:
    """What a failed stage prints after `<name>: error: `: an expected error's own message;
    for an OSError or a MemoryError, the cause and the fix; for anything else, its type and
    first line, the traceback saved to a file (and printed at DEBUG)."""
    if isinstance(exc, WardrobeError):
        return str(exc)
    if isinstance(exc, OSError):
        return os_error_line(exc)
    # TensorFlow's failed allocation (tf.errors.ResourceExhaustedError), where it survives it
    if isinstance(exc, MemoryError) or type(exc).__name__ == "ResourceExhaustedError":
        return (
            "out of memory; lower the batch sizes, evaluate.generated or plots.dpi in "
            "params.yaml, or free memory, then run the stage again"
        )
    if logging.getLogger("wardrobe").isEnabledFor(logging.DEBUG):
        traceback.print_exc()
    return (
        f"unexpected {type(exc).__name__}: {first_line(exc)} (traceback {_save_traceback(name)})"
    )
