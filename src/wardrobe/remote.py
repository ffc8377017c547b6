"""`make push` and `make pull`: `dvc push` and `dvc pull` with the S3 remote's faults named.

DVC alone waits a minute or more on a store that is down or refuses its keys (its S3 client
retries), and then prints a generic error ("failed to push data to the cloud - 52 files failed
to upload", "Forbidden"); on a store that stops in the middle it can wait without end. Here
the remote is asked first (one listing, 5 s timeouts) and watched while DVC transfers: a
store that does not answer for STALL_S seconds stops the transfer. Every failure ends in one
line naming the cause and the fix. DVC stores objects by content and writes each one whole,
so a transfer cut short loses nothing: running it again sends or fetches the rest.

    python -m wardrobe.remote check|push|pull [-r NAME] [DVC ARGS...]

Remotes other than S3 are passed to DVC unchecked.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wardrobe.cli import run_stage
from wardrobe.errors import WardrobeError, first_line

PROBE_TIMEOUT_S = 5
POLL_S = 5  # how often the store is asked while DVC transfers
STALL_S = 20  # how long it may not answer before the transfer is stopped
STOP_GRACE_S = 15  # after SIGINT, before SIGKILL
ACCESS_DENIED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden"}


class RemoteError(WardrobeError):
    """The DVC remote cannot be used, or a transfer to or from it failed."""


@dataclass(frozen=True)
class Remote:
    """A DVC remote as the project's config (with .dvc/config.local) gives it."""

    name: str
    url: str
    settings: dict[str, Any]

    @property
    def endpoint(self) -> str | None:
        return self.settings.get("endpointurl") or os.environ.get("AWS_ENDPOINT_URL")

    def __str__(self) -> str:
        at = f" at {self.endpoint}" if self.endpoint else ""
        return f"DVC remote '{self.name}' ({self.url}{at})"

    def keys_fix(self) -> str:
        if self.settings.get("access_key_id"):
            return (
                f"fix the remote's keys (`dvc remote modify --local {self.name} "
                "access_key_id …` and `secret_access_key …`)"
            )
        return (
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (`source .stack/env` for the stack's)"
        )


def find_remote(root: Path, name: str | None = None) -> Remote:
    """The remote `name`, or the default one; a one-line error when there is none."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        config = repo.config
        remotes = config.get("remote", {})
        name = name or config.get("core", {}).get("remote")
        if not name:
            raise RemoteError(
                "no default DVC remote is configured; `make stack` configures the team stack's, "
                "or run `dvc remote add --default NAME URL`"
            )
        if name not in remotes:
            known = ", ".join(sorted(remotes)) or "none"
            raise RemoteError(
                f"there is no DVC remote named '{name}' (configured: {known}); "
                "`dvc remote list` shows them"
            )
        settings = dict(remotes[name])
    return Remote(name, settings.pop("url"), settings)


class Probe:
    """Asks an S3 remote for one key of its prefix; `problem()` says what is wrong, or None."""

    def __init__(self, remote: Remote) -> None:
        import botocore.session
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        self.remote = remote
        bucket, _, prefix = remote.url.removeprefix("s3://").partition("/")
        self.bucket, self.prefix = bucket, prefix
        config = Config(
            connect_timeout=PROBE_TIMEOUT_S,
            read_timeout=PROBE_TIMEOUT_S,
            retries={"total_max_attempts": 1},
        )
        try:
            self.client = botocore.session.get_session().create_client(
                "s3",
                endpoint_url=remote.endpoint,
                aws_access_key_id=remote.settings.get("access_key_id"),
                aws_secret_access_key=remote.settings.get("secret_access_key"),
                region_name=remote.settings.get("region") or "us-east-1",
                config=config,
            )
        except BotoCoreError as exc:  # e.g. AWS_PROFILE names no profile
            raise RemoteError(
                f"{remote} cannot be used ({first_line(exc)}); fix the AWS settings "
                "(AWS_PROFILE, ~/.aws/config) or the remote's"
            ) from exc

    def problem(self) -> str | None:
        """What is wrong with the remote and how to fix it, as one line; None if it answers."""
        found = self.fault()
        return f"{found[0]}; {found[1]}" if found else None

    def fault(self) -> tuple[str, str] | None:
        """(cause, fix), or None when the store lists the remote's prefix."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
        )

        remote = self.remote
        try:
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except NoCredentialsError:
            return f"{remote} has no S3 keys", remote.keys_fix()
        except (ConnectionError, HTTPClientError) as exc:  # refused, timed out, cut
            return (
                f"{remote} is unreachable ({first_line(exc)})",
                "start the store (`make stack` for the team stack's) or fix its endpointurl "
                f"(`dvc remote modify --local {remote.name} endpointurl URL`)",
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ACCESS_DENIED or status == 403:
                return f"{remote} refused the S3 keys ({code or status})", remote.keys_fix()
            if code == "NoSuchBucket":
                return (
                    f"{remote}: bucket '{self.bucket}' does not exist",
                    "create it (`make stack` creates the stack's) or fix the URL "
                    f"(`dvc remote modify {remote.name} url …`)",
                )
            message = error.get("Message") or first_line(exc)
            return f"{remote} answered {code or status} ({message})", "see the store's log"
        except BotoCoreError as exc:
            return f"{remote} cannot be used ({first_line(exc)})", "check its settings"
        return None


def transfer(root: Path, action: str, remote: Remote, dvc_args: Sequence[str]) -> None:
    """`dvc push|pull -r remote`, its stderr kept aside, the store watched while it runs."""
    probe = Probe(remote) if remote.url.startswith("s3://") else None
    if probe and (problem := probe.problem()):
        raise RemoteError(problem)
    if action == "check":
        print(f"remote: {remote} answers")
        return
    command = [str(Path(sys.executable).parent / "dvc"), action, "-r", remote.name, *dvc_args]
    with tempfile.NamedTemporaryFile(
        "w+", prefix=f"wardrobe-dvc-{action}-", suffix=".log", delete=False
    ) as log:
        process = subprocess.Popen(command, cwd=root, stderr=log)
        stalled = watch(process, probe)
        log.seek(0)
        output = log.read()
    if process.returncode == 0:
        sys.stderr.write(output)
        os.unlink(log.name)
        return
    fault = probe.fault() if probe else None
    if fault or stalled:
        cause, fix = fault or (f"{remote} stopped answering for {STALL_S} s", "check the store")
        rest = "sends the rest" if action == "push" else "fetches the rest"
        raise RemoteError(
            f"dvc {action} stopped: {cause}; what was transferred is kept: {fix}, then "
            f"`make {action}` {rest} (DVC's output: {log.name})"
        )
    errors = re.findall(r"^ERROR: (.*)$", output, flags=re.MULTILINE)
    said = errors[0] if errors else f"exit status {process.returncode}"
    raise RemoteError(f"dvc {action} failed: {said} (DVC's output: {log.name})")


def watch(process: subprocess.Popen, probe: Probe | None) -> bool:
    """Wait for `process`; stop it if the store does not answer for STALL_S seconds. Returns
    whether it was stopped."""
    silent_since: float | None = None
    while True:
        try:
            process.wait(timeout=POLL_S)
            return False
        except subprocess.TimeoutExpired:
            pass
        if probe is None or probe.problem() is None:
            silent_since = None
            continue
        silent_since = silent_since or time.monotonic()
        if time.monotonic() - silent_since >= STALL_S:
            process.send_signal(signal.SIGINT)  # DVC stops its transfer and cleans up
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            return True


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m wardrobe.remote",
        description="dvc push / pull with the remote checked first and watched",
    )
    parser.add_argument("action", choices=["check", "push", "pull"])
    parser.add_argument("-r", "--remote", help="the remote (default: DVC's default remote)")
    return parser.parse_known_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args, dvc_args = parse_args(argv)
    root = Path.cwd()
    transfer(root, args.action, find_remote(root, args.remote), dvc_args)


if __name__ == "__main__":
    run_stage("remote", main)
