"""The fetch stage's library: the four canonical Fashion-MNIST files from the first source that
delivers them intact (a local mirror directory, then each base URL), verified by the SHA-256 of
their decompressed content. Only the fetch stage imports this module."""

from __future__ import annotations

import functools
import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from wardrobe.errors import FetchError
from wardrobe.fsio import atomic_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CanonicalFile:
    """One of the four files, identified by the SHA-256 of its *decompressed* IDX bytes."""

    name: str  # decompressed file name, as written to data/raw
    sha256: str
    size: int

    @property
    def gz_name(self) -> str:
        return self.name + ".gz"


CANONICAL_FILES: dict[str, CanonicalFile] = {
    f.name: f
    for f in (
        CanonicalFile(
            "train-images-idx3-ubyte",
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            47_040_016,
        ),
        CanonicalFile(
            "train-labels-idx1-ubyte",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            60_008,
        ),
        CanonicalFile(
            "t10k-images-idx3-ubyte",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            7_840_016,
        ),
        CanonicalFile(
            "t10k-labels-idx1-ubyte",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            10_008,
        ),
    )
}


class SourceFailed(Exception):
    """One source could not deliver one file: where it looked, and why (the message)."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(reason)
        self.location = location


def decompress(location: str, payload: bytes, expected: CanonicalFile) -> bytes:
    """gunzip, or pass through content that is already a raw IDX file. Decompression stops one
    byte past the expected size, so a gzip bomb costs no more memory than the real file."""
    if payload[:2] != b"\x1f\x8b":
        return payload
    content, rest = b"", payload
    while rest:  # a gzip file may hold several members, one after the other
        stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            content += stream.decompress(rest, expected.size + 1 - len(content))
        except zlib.error as exc:
            raise SourceFailed(location, f"not a valid gzip stream ({exc})") from None
        if len(content) > expected.size:
            raise SourceFailed(
                location, f"decompresses to more than the expected {expected.size:,} bytes"
            )
        if not stream.eof:
            raise SourceFailed(location, "not a valid gzip stream (truncated)")
        rest = stream.unused_data.lstrip(b"\0")  # zero padding after the last member
    return content


def verify(location: str, content: bytes, expected: CanonicalFile) -> None:
    digest = hashlib.sha256(content).hexdigest()
    if digest != expected.sha256:
        raise SourceFailed(
            location,
            f"SHA-256 {digest[:12]}… of {len(content):,} decompressed bytes does not match "
            f"the expected {expected.sha256[:12]}… ({expected.size:,} bytes): corrupt, "
            "truncated or not Fashion-MNIST",
        )


def from_mirror(mirror: Path, expected: CanonicalFile) -> tuple[str, bytes]:
    """(path read, bytes) of the .gz file, or of the decompressed one, in a mirror directory."""
    for candidate in (mirror / expected.gz_name, mirror / expected.name):
        if candidate.is_file():
            try:
                return str(candidate), candidate.read_bytes()
            except OSError as exc:
                raise SourceFailed(str(candidate), f"unreadable ({exc.strerror})") from None
    raise SourceFailed(str(mirror / expected.gz_name), "file not found")


def from_url(
    base: str, expected: CanonicalFile, timeout_s: float, retries: int
) -> tuple[str, bytes]:
    """(URL, bytes) of a GET; transient failures (timeouts, 5xx, dropped connections) are
    retried, permanent ones (4xx, a malformed URL) are not."""
    url = base + expected.gz_name
    last = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(2.0**attempt * 0.25, 5.0))
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                payload = response.read()
                length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) != len(payload):
                last = f"connection closed after {len(payload):,} of {int(length):,} bytes"
                continue
            return url, payload
        except urllib.error.HTTPError as exc:
            if exc.code < 500:  # 404, 403, ...: asking again will not help
                raise SourceFailed(url, f"HTTP {exc.code} {exc.reason}") from None
            last = f"HTTP {exc.code} {exc.reason}"
        except ValueError as exc:  # "unknown url type": no scheme, or not http(s)
            raise SourceFailed(url, f"not a usable URL ({exc})") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            last = f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
    raise SourceFailed(url, f"{last} (after {retries + 1} attempts)")


def fetch_raw(
    dest: str | os.PathLike[str],
    *,
    mirror: str | None,
    urls: Sequence[str],
    timeout_s: float = 30.0,
    retries: int = 2,
    files: Mapping[str, CanonicalFile] = CANONICAL_FILES,
) -> dict[str, str]:
    """Write the verified, decompressed files to `dest`; return {file name: source used}.

    Sources are tried in order: the `mirror` directory, then each base URL. Anything whose
    checksum does not match is rejected. `dest` is replaced only once every file is verified,
    so a failed fetch leaves an existing `dest` untouched.
    """
    # Each source maps a canonical file to (where it was read, its bytes).
    sources: list[Callable[[CanonicalFile], tuple[str, bytes]]] = []
    if mirror:
        sources.append(functools.partial(from_mirror, Path(mirror)))
    for url in urls:
        base = url if url.endswith("/") else url + "/"
        sources.append(functools.partial(from_url, base, timeout_s=timeout_s, retries=retries))
    if not sources:
        raise FetchError("no source configured; set data.mirror or data.urls in params.yaml")

    used: dict[str, str] = {}
    with atomic_dir(dest) as tmp:
        for expected in files.values():
            failures = []
            for source in sources:
                try:
                    location, payload = source(expected)
                    content = decompress(location, payload, expected)
                    verify(location, content, expected)
                except SourceFailed as exc:
                    log.warning("%s from %s: %s", expected.name, exc.location, exc)
                    failures.append(f"{exc.location}: {exc}")
                    continue
                (tmp / expected.name).write_bytes(content)
                used[expected.name] = location
                log.info("%s: verified, from %s", expected.name, location)
                break
            else:
                raise FetchError(
                    f"no source gave a valid {expected.gz_name}: {'; '.join(failures)}. "
                    "Fix: install the Debian package dataset-fashion-mnist, or point data.mirror "
                    "at a directory with the four canonical .gz files, or data.urls at a "
                    "reachable mirror"
                )
    return used
