"""fetch: mirrors in order, checksum verification, HTTP failures, atomic output."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wardrobe.errors import FetchError
from wardrobe.fetch import CANONICAL_FILES, fetch_raw
from wardrobe.fsio import sha256_file


def test_local_mirror_dir_gives_decompressed_verified_files(tmp_path, real_mirror):
    dest = tmp_path / "raw"
    used = fetch_raw(dest, mirror=str(real_mirror), urls=[])
    assert sorted(p.name for p in dest.iterdir()) == sorted(CANONICAL_FILES)
    for name, expected in CANONICAL_FILES.items():
        assert sha256_file(dest / name) == expected.sha256
        assert (dest / name).stat().st_size == expected.size
        assert used[name] == str(real_mirror / f"{name}.gz")


def test_http_mirror_serves_the_real_files(tmp_path, real_mirror, http_mirror):
    for f in CANONICAL_FILES.values():
        shutil.copy(real_mirror / f.gz_name, http_mirror.root / f.gz_name)
    dest = tmp_path / "raw"
    used = fetch_raw(dest, mirror=None, urls=[http_mirror.url.rstrip("/")])
    for name, expected in CANONICAL_FILES.items():
        assert sha256_file(dest / name) == expected.sha256
        assert used[name] == http_mirror.url + expected.gz_name


def test_same_content_hash_whichever_source(tmp_path, small_files, http_mirror):
    files, source = small_files
    # The HTTP mirror recompresses at another level: different .gz bytes, same content.
    for f in files.values():
        content = gzip.decompress((source / f.gz_name).read_bytes())
        (http_mirror.root / f.gz_name).write_bytes(gzip.compress(content, compresslevel=1))
    fetch_raw(tmp_path / "a", mirror=str(source), urls=[], files=files)
    fetch_raw(tmp_path / "b", mirror=None, urls=[http_mirror.url], files=files)
    for name, f in files.items():
        assert (source / f.gz_name).read_bytes() != (http_mirror.root / f.gz_name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_mirror_missing_file_falls_back_to_url(tmp_path, small_files, http_mirror):
    files, source = small_files
    first, second = files.values()
    shutil.copy(source / second.gz_name, http_mirror.root / second.gz_name)
    (source / second.gz_name).unlink()
    used = fetch_raw(tmp_path / "raw", mirror=str(source), urls=[http_mirror.url], files=files)
    assert used[first.name].startswith(str(source))
    assert used[second.name] == http_mirror.url + second.gz_name


def test_uncompressed_file_in_mirror_is_accepted(tmp_path, small_files):
    files, source = small_files
    for f in files.values():
        (source / f.name).write_bytes(gzip.decompress((source / f.gz_name).read_bytes()))
        (source / f.gz_name).unlink()
    used = fetch_raw(tmp_path / "raw", mirror=str(source), urls=[], files=files)
    for f in files.values():
        assert sha256_file(tmp_path / "raw" / f.name) == f.sha256
        assert used[f.name] == str(source / f.name)  # names the file it really read


def flip_byte_in_content(gz_path: Path) -> None:
    content = bytearray(gzip.decompress(gz_path.read_bytes()))
    content[len(content) // 2] ^= 0xFF
    gz_path.write_bytes(gzip.compress(bytes(content)))


def test_corrupt_file_everywhere_fails_naming_file_sources_and_reason(
    tmp_path, small_files, http_mirror
):
    files, source = small_files
    bad = next(iter(files.values()))
    flip_byte_in_content(source / bad.gz_name)
    shutil.copy(source / bad.gz_name, http_mirror.root / bad.gz_name)
    dest = tmp_path / "raw"
    with pytest.raises(FetchError) as err:
        fetch_raw(dest, mirror=str(source), urls=[http_mirror.url], files=files, retries=0)
    message = str(err.value)
    assert "\n" not in message
    assert f"no source gave a valid {bad.gz_name}" in message
    assert str(source / bad.gz_name) in message
    assert http_mirror.url + bad.gz_name in message
    assert message.count("does not match the expected") == 2
    assert "dataset-fashion-mnist" in message  # the fix
    assert not dest.exists()


def test_corrupt_mirror_file_falls_back_to_good_url(tmp_path, small_files, http_mirror):
    files, source = small_files
    bad = next(iter(files.values()))
    shutil.copy(source / bad.gz_name, http_mirror.root / bad.gz_name)
    flip_byte_in_content(source / bad.gz_name)
    used = fetch_raw(tmp_path / "raw", mirror=str(source), urls=[http_mirror.url], files=files)
    assert used[bad.name] == http_mirror.url + bad.gz_name
    assert sha256_file(tmp_path / "raw" / bad.name) == bad.sha256


def test_truncated_gzip_is_rejected(tmp_path, small_files, http_mirror):
    files, source = small_files
    for f in files.values():
        payload = (source / f.gz_name).read_bytes()
        (http_mirror.root / f.gz_name).write_bytes(payload[: len(payload) // 2])
    with pytest.raises(FetchError, match="not a valid gzip stream"):
        fetch_raw(tmp_path / "raw", mirror=None, urls=[http_mirror.url], files=files)


def test_gzip_with_a_flipped_byte_is_rejected(tmp_path, small_files):
    files, source = small_files
    f = next(iter(files.values()))
    payload = bytearray((source / f.gz_name).read_bytes())
    payload[len(payload) // 2] ^= 0x01
    (source / f.gz_name).write_bytes(bytes(payload))
    with pytest.raises(FetchError, match=r"not a valid gzip stream|does not match") as err:
        fetch_raw(tmp_path / "raw", mirror=str(source), urls=[], files=files)
    assert f.gz_name in str(err.value)


BOMB = """
import sys
from wardrobe.errors import FetchError
from wardrobe.fetch import CanonicalFile, fetch_raw
expected = CanonicalFile("bomb-idx1-ubyte", "0" * 64, 60_008)
try:
    fetch_raw(sys.argv[1], mirror=sys.argv[2], urls=[], files={expected.name: expected})
except FetchError as exc:
    print(exc)
# The peak resident size of this process's own memory (ru_maxrss would count the parent's).
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""


def test_gzip_bomb_is_rejected_without_decompressing_it_whole(tmp_path):
    # 1 GiB of zeros in about 1 MB: decompressing it whole would take that 1 GiB.
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    block = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    (mirror / "bomb-idx1-ubyte.gz").write_bytes(block * 16)
    result = subprocess.run(
        [sys.executable, "-c", BOMB, str(tmp_path / "raw"), str(mirror)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    message, peak_kib = result.stdout.strip().splitlines()
    assert "decompresses to more than the expected 60,008 bytes" in message
    assert int(peak_kib) < 300 * 1024, peak_kib  # the interpreter, not the bomb


def test_multi_member_zero_padded_gzip_is_accepted(tmp_path, small_files):
    files, source = small_files
    f = next(iter(files.values()))
    content = gzip.decompress((source / f.gz_name).read_bytes())
    half = len(content) // 2
    members = gzip.compress(content[:half]) + gzip.compress(content[half:])
    (source / f.gz_name).write_bytes(members + b"\0" * 512)  # and zero padding, as tar pads
    fetch_raw(tmp_path / "raw", mirror=str(source), urls=[], files=files)
    assert sha256_file(tmp_path / "raw" / f.name) == f.sha256


def test_missing_file_on_server_is_a_404_without_retries(tmp_path, small_files, http_mirror):
    files, _ = small_files
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_raw(tmp_path / "raw", mirror=None, urls=[http_mirror.url], files=files, retries=3)
    assert len(http_mirror.requests) == 1  # a 404 is final: asked once


def test_transient_server_errors_are_retried(tmp_path, small_files, http_mirror):
    files, source = small_files
    for f in files.values():
        shutil.copy(source / f.gz_name, http_mirror.root / f.gz_name)
    first = next(iter(files.values()))
    http_mirror.fail_first["/" + first.gz_name] = 2
    fetch_raw(tmp_path / "raw", mirror=None, urls=[http_mirror.url], files=files, retries=2)
    assert http_mirror.requests.count("/" + first.gz_name) == 3


def test_retries_give_up_with_the_last_reason(tmp_path, small_files, http_mirror):
    files, source = small_files
    first = next(iter(files.values()))
    shutil.copy(source / first.gz_name, http_mirror.root / first.gz_name)
    http_mirror.fail_first["/" + first.gz_name] = 5
    with pytest.raises(FetchError, match=r"HTTP 503 .*after 2 attempts"):
        fetch_raw(tmp_path / "raw", mirror=None, urls=[http_mirror.url], files=files, retries=1)


def test_connection_cut_short_is_rejected(tmp_path, small_files, http_mirror):
    files, source = small_files
    first = next(iter(files.values()))
    shutil.copy(source / first.gz_name, http_mirror.root / first.gz_name)
    http_mirror.drop.add("/" + first.gz_name)
    with pytest.raises(FetchError, match=r"IncompleteRead|connection closed"):
        fetch_raw(tmp_path / "raw", mirror=None, urls=[http_mirror.url], files=files, retries=0)


def test_unreachable_and_slow_servers_fail_within_the_timeout(
    tmp_path, small_files, http_mirror, closed_port_url
):
    files, source = small_files
    for f in files.values():
        shutil.copy(source / f.gz_name, http_mirror.root / f.gz_name)
    http_mirror.delay_s = 2.0
    start = time.perf_counter()
    with pytest.raises(FetchError) as err:
        fetch_raw(
            tmp_path / "raw", mirror=None, urls=[closed_port_url, http_mirror.url],
            files=files, timeout_s=0.3, retries=0,
        )  # fmt: skip
    assert time.perf_counter() - start < 1.5  # one 0.3 s timeout, not the server's 2 s
    message = str(err.value)
    assert "Connection refused" in message or "ConnectionRefusedError" in message
    assert "timed out" in message


def test_failed_fetch_leaves_existing_output_untouched(tmp_path, small_files):
    files, source = small_files
    dest = tmp_path / "raw"
    fetch_raw(dest, mirror=str(source), urls=[], files=files)
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    flip_byte_in_content(source / next(iter(files.values())).gz_name)
    with pytest.raises(FetchError):
        fetch_raw(dest, mirror=str(source), urls=[], files=files)
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_no_source_configured(tmp_path):
    with pytest.raises(FetchError, match="no source configured"):
        fetch_raw(tmp_path / "raw", mirror=None, urls=[])


def test_url_without_scheme_is_rejected_without_retries(tmp_path, small_files):
    files, _ = small_files
    with pytest.raises(FetchError, match="not a usable URL"):
        fetch_raw(tmp_path / "raw", mirror=None, urls=["mirror.example/fmnist"], files=files)
