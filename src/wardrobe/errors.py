"""Errors a user can cause and fix; stage scripts turn them into a one-line message."""

from __future__ import annotations

import errno


class WardrobeError(Exception):
    """An expected failure: the message names the cause and the fix."""


class ParamsError(WardrobeError):
    """params.yaml holds a missing, unknown or invalid value."""


class DataError(WardrobeError):
    """Input data is missing, corrupt or not what the pipeline expects."""


class FetchError(DataError):
    """No source delivered a valid copy of a dataset file."""


class ChecksFailed(WardrobeError):
    """The data checks ran and at least one expectation failed."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (of the driver's error under a SQLAlchemy
    one), or its type's name."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def os_error_line(exc: OSError, what: str = "a file") -> str:
    """An OSError as one line: the path, the cause, and the fix for the usual causes."""
    where = exc.filename or what
    cause = exc.strerror or first_line(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free disk space"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "make the path writable (in Docker, run as the project's owner)"
    elif exc.errno == errno.ENOENT:
        fix = "check the path (`dvc checkout` restores the outputs dvc.lock records)"
    else:
        fix = "check the path and the disk"
    return f"cannot use {where} ({cause}); {fix}, then run the stage again"
