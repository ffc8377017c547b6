"""Errors a user can cause and fix; stage scripts turn them into a one-line message."""


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
