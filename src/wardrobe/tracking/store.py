"""Where MLflow runs go, and the one translation of the tracking store's errors into one line.

The default store is an SQLite file `mlflow.db` at the project root (artifacts in `mlartifacts/`
beside it); `MLFLOW_TRACKING_URI` points every run at a shared server instead. Paths are
absolute and resolved from the *project's* root, also when DVC runs a stage in a temporary copy
under `.dvc/tmp/exps/`, so runs of `dvc exp run --temp` and `dvc queue` land in the same store.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import http.client
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from wardrobe.errors import WardrobeError, first_line, os_error_line
from wardrobe.fsio import project_root

DEFAULT_EXPERIMENT = "wardrobe"
REACHABILITY_TIMEOUT_S = 10.0

# MLflow's HTTP client otherwise retries an unreachable server for minutes.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
# MLflow logs every database error with its traceback (about 90 lines) before raising it;
# `store_errors` reports the same error in one line.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

# What a database error's text says, what it means for the store, and what fixes it.
STORE_CAUSES = (
    (("file is not a database", "database disk image is malformed"),
     "is corrupt", "restore it from a backup, or move it aside to start an empty store"),
    (("attempt to write a readonly database", "read-only file system"),
     "is read-only", "make the database file and its directory writable"),
    (("database or disk is full", "no space left on device"),
     "is on a full disk", "free disk space"),
    (("database is locked", "database table is locked"),
     "is locked by another process", "wait for it to finish, or track parallel runs into a "
     "tracking server (MLFLOW_TRACKING_URI)"),
    (("connection refused", "could not connect to server", "failed to establish a new connection",
      "could not translate host name"),
     "is unreachable", "start it or fix MLFLOW_TRACKING_URI"),
    (("you are not authenticated", "error code 401", "invalid username or password"),
     "refused the login", "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (`source "
     ".stack/env` for the team stack's)"),
)  # fmt: skip


class TrackingError(WardrobeError):
    """The tracking store cannot be reached or written."""


# The MLflow UI reads this experiment tag to choose the experiment's landing page.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def tracking_uri(root: Path | None = None) -> str:
    """`MLFLOW_TRACKING_URI` when set, else sqlite:///<project root>/mlflow.db."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(root)


def default_tracking_uri(root: Path | None = None) -> str:
    return f"sqlite:///{(root or project_root()) / 'mlflow.db'}"


def artifact_root(root: Path | None = None) -> str:
    return ((root or project_root()) / "mlartifacts").as_uri()


def check_reachable(uri: str, timeout_s: float = REACHABILITY_TIMEOUT_S) -> None:
    """Fail fast, with the URI and the fix, when a tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # it answered: a server that has no /health page, or wants credentials
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({reason}); start it, fix "
            "MLFLOW_TRACKING_URI, or unset it to track into the project's mlflow.db"
        ) from None


# What a tracking server answers when a store behind it fails (its database, its artifact
# store): the server's own 5xx, or the client's retries giving up on them.
SERVER_FAILED = ("error code 500", "error code 502", "error code 503", "error code 504",
                 "500 error responses", "502 error responses", "503 error responses",
                 "504 error responses", "internal server error")  # fmt: skip
PROBE_TIMEOUT_S = 4.0


def _probe(url: str) -> str | None:
    """None when the server answers `url` (with the client's login) with success or 4xx; else
    what went wrong, as one short line."""
    request = urllib.request.Request(url)
    user, password = (os.environ.get(f"MLFLOW_TRACKING_{k}") for k in ("USERNAME", "PASSWORD"))
    if user and password:
        login = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {login}")
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S):
            return None
    except urllib.error.HTTPError as exc:
        if exc.code < 500:
            return None
        body = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError):  # MLflow's JSON error
            body = json.loads(body).get("message", body)
        lines = str(body).strip().splitlines()
        if not lines or lines[0].startswith("<"):  # an HTML error page: its status says it
            return f"HTTP {exc.code} {exc.reason}"
        return f"HTTP {exc.code}: {lines[0][:200]}"
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        return str(getattr(exc, "reason", exc))


def diagnose_server(uri: str, exc: BaseException) -> tuple[str, str] | None:
    """(cause, fix) naming which part of a tracking server failed: the server itself, its
    database (backend store), or its artifact store (or that store's disk); None when every
    part answers. Each part is asked once, briefly, so the line comes within seconds."""
    base = uri.rstrip("/")
    down = _probe(f"{base}/health")
    if down:
        return f"is unreachable ({down})", "start it or fix MLFLOW_TRACKING_URI"
    failing = _probe(f"{base}/api/2.0/mlflow/experiments/search?max_results=1")
    if failing:
        return (
            f"answers, but its database (the backend store) fails ({failing})",
            "start the database (`make stack` starts the team stack's PostgreSQL) or see the "
            "server's log",
        )
    text = str(exc).lower()
    if any(needle in text for needle in ("no space left", "disk full", "no free volumes")):
        return (
            f"answers, but its artifact store's disk is full ({first_line(exc)})",
            "free disk space on the artifact store",
        )
    failing = _probe(f"{base}/api/2.0/mlflow-artifacts/artifacts?path=")
    if failing:
        return (
            f"answers, but its artifact store fails ({failing})",
            "start the artifact store (`make stack` starts the team stack's SeaweedFS) or see "
            "the server's log",
        )
    return None


def describe_store_error(uri: str, doing: str, exc: BaseException) -> str:
    """One line: the store, what it did, the cause (corrupt, read-only, full, locked,
    unreachable, a failing part of a tracking server, or the error's own first line) and
    the fix."""
    text = str(exc).lower()
    if uri.startswith(("http://", "https://")) and any(n in text for n in SERVER_FAILED):
        found = diagnose_server(uri, exc)
        if found:
            return f"MLflow tracking server {uri} {found[0]}; {found[1]}, then run the stage again"
    for needles, cause, fix in STORE_CAUSES:
        if any(needle in text for needle in needles):
            return (
                f"MLflow tracking store {uri} {cause} ({first_line(exc)}); {fix}, then run "
                "the stage again"
            )
    return (
        f"MLflow tracking store {uri} {doing}: {first_line(exc)}; check the store (a "
        "tracking server for parallel runs) and run the stage again"
    )


@contextlib.contextmanager
def store_errors(uri: str, doing: str = "failed") -> Iterator[None]:
    """Turn what the store raises inside the block (an MLflow error, a database error, a run
    file that cannot be written) into one TrackingError line naming the store and the fix.
    `doing` completes "MLflow tracking store <uri> ...", e.g. "refused the experiment 'x'"."""
    from alembic.util.exc import CommandError
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (MlflowException, SQLAlchemyError, CommandError) as exc:  # CommandError: migration
        raise TrackingError(describe_store_error(uri, doing, exc)) from None
    except OSError as exc:
        if exc.filename is None and exc.errno is None:  # a network error of the HTTP client
            raise TrackingError(describe_store_error(uri, doing, exc)) from None
        raise TrackingError(os_error_line(exc, "a run file")) from None


def check_store(uri: str | None = None) -> str:
    """Fail fast, before a stage's work, when the tracking store cannot be used: a server that
    does not answer, a database that is corrupt, locked or unreachable. An SQLite store's
    schema is created (or upgraded) here, under a lock on the file: MLflow creates it without
    one, and stages that start at once on a new file (`dvc queue start -j 2`) fail with
    "table ... already exists". Returns the URI."""
    import mlflow

    uri = uri or tracking_uri()
    check_reachable(uri)
    with store_errors(uri, "cannot be read"), _sqlite_file_lock(uri):
        mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    return uri


@contextlib.contextmanager
def _sqlite_file_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive flock on an SQLite store's file (SQLite's own locks are fcntl locks,
    which flock does not touch); other URIs, and files that cannot be opened, pass through."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    try:
        handle = open(uri.removeprefix("sqlite:///"), "ab")  # noqa: SIM115 - held below
    except OSError:  # e.g. read-only: MLflow's own error names the cause
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def configure(experiment: str | None = None, root: Path | None = None) -> str:
    """Point MLflow at the project's store and experiment (the project at `root`, by default
    the one the working directory is in), tagged as model training (the UI opens it on its
    training runs, not on the GenAI overview); return the tracking URI."""
    import mlflow
    from mlflow.exceptions import MlflowException

    root = root or project_root()
    uri = check_store(tracking_uri(root))
    mlflow.set_tracking_uri(uri)
    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    # The project's own store keeps artifacts beside it; any other store decides for itself.
    location = artifact_root(root) if uri == default_tracking_uri(root) else None
    with store_errors(uri, f"refused the experiment '{name}'"):
        if mlflow.get_experiment_by_name(name) is None:
            try:
                mlflow.create_experiment(name, artifact_location=location)
            except MlflowException as exc:  # created meanwhile by a parallel stage
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
        active = mlflow.set_experiment(name)
        if active.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            mlflow.set_experiment_tag(EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return uri
