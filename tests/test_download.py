"""End-to-end downloads from a loopback server, with small files in the real raw layouts."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
from pathlib import Path

import pytest
from rawfiles import serve_directory, write_fno_mat, write_pdebench

from sdkd.data import download
from sdkd.data.download import REGISTRY, RemoteFile, fetch, resolve
from sdkd.errors import SdkdError


@pytest.fixture(autouse=True)
def _no_retry_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "_RETRY_WAIT_S", 0.0)


def _md5(path: Path) -> str:
    return "md5:" + hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """A directory holding a PDEBench-layout file and an FNO MAT-file."""
    directory = tmp_path / "served"
    directory.mkdir()
    write_pdebench(directory / "2D_diff-react_NA_NA.h5")
    write_fno_mat(directory / "NavierStokes_V1e-5_N1200_T20.mat")
    return directory


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """An empty download directory; tests check it holds nothing but the output."""
    directory = tmp_path / "raw"
    directory.mkdir()
    return directory


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("name", ["2D_diff-react_NA_NA.h5", "NavierStokes_V1e-5_N1200_T20.mat"])
def test_good_file(served: Path, dest: Path, name: str) -> None:
    out = dest / name
    with serve_directory(served) as server:
        result = fetch(server.url(name), _md5(served / name), out, progress=False)
        assert server.requests == 1
    assert result == out
    assert out.read_bytes() == (served / name).read_bytes()
    assert _listing(dest) == [name]
    # pooch stages in a 0600 temporary file; the result must follow the umask instead.
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_creates_missing_directory_and_shows_progress(served: Path, tmp_path: Path) -> None:
    name = "2D_diff-react_NA_NA.h5"
    out = tmp_path / "new" / "deeper" / name
    with serve_directory(served) as server:
        fetch(server.url(name), _md5(served / name), out, progress=True)
    assert out.read_bytes() == (served / name).read_bytes()


def test_checksum_mismatch(served: Path, dest: Path) -> None:
    name = "NavierStokes_V1e-5_N1200_T20.mat"
    wrong = "md5:" + "0" * 32
    with serve_directory(served) as server:
        with pytest.raises(SdkdError) as caught:
            fetch(server.url(name), wrong, dest / name, progress=False)
        assert server.requests == 1, "a checksum mismatch is not worth another download"
    message = str(caught.value)
    assert wrong in message
    assert _md5(served / name) in message  # the actual hash, to update a stale registry
    assert "\n" not in message
    assert _listing(dest) == []


def test_truncated_transfer(served: Path, dest: Path) -> None:
    name = "2D_diff-react_NA_NA.h5"
    size = (served / name).stat().st_size
    with serve_directory(served, truncate=True) as server:
        with pytest.raises(SdkdError, match="cut short") as caught:
            fetch(server.url(name), _md5(served / name), dest / name, progress=False, retries=1)
        assert server.requests == 2  # retried once, as a transient failure
    assert f"of {size} bytes" in str(caught.value)
    assert _listing(dest) == []


@pytest.mark.parametrize(("status", "tries"), [(500, 2), (404, 1)])
def test_http_error(served: Path, dest: Path, status: int, tries: int) -> None:
    name = "2D_diff-react_NA_NA.h5"
    with serve_directory(served, status=status) as server:
        url = server.url(name)
        with pytest.raises(SdkdError, match=f"HTTP {status}") as caught:
            fetch(url, _md5(served / name), dest / name, progress=False, retries=1)
        # 5xx may be a passing server fault and is retried; 404 will not change.
        assert server.requests == tries
    assert url in str(caught.value)
    assert _listing(dest) == []


def test_transient_error_then_success(served: Path, dest: Path) -> None:
    name = "NavierStokes_V1e-5_N1200_T20.mat"
    with serve_directory(served, fail_first=2) as server:
        fetch(server.url(name), _md5(served / name), dest / name, progress=False, retries=2)
        assert server.requests == 3
    assert (dest / name).read_bytes() == (served / name).read_bytes()
    assert _listing(dest) == [name]


def test_connection_refused(dest: Path) -> None:
    with socket.socket() as probe:  # a port that was just free, so nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.h5"
    with pytest.raises(SdkdError, match="cannot connect") as caught:
        fetch(url, "md5:" + "0" * 32, dest / "x.h5", progress=False, retries=0)
    assert url in str(caught.value)
    assert _listing(dest) == []


@pytest.mark.parametrize(
    "bad", ["b8d0b86064193195ddc30c33be5dc949", "md5:xyz", "sha256:" + "0" * 32, "crc32:1234"]
)
def test_bad_known_hash_fails_before_any_request(served: Path, dest: Path, bad: str) -> None:
    with serve_directory(served) as server:
        with pytest.raises(SdkdError, match="bad known_hash"):
            fetch(server.url("2D_diff-react_NA_NA.h5"), bad, dest / "f.h5", progress=False)
        assert server.requests == 0
    assert _listing(dest) == []


def test_rerun_with_file_present_makes_no_request(
    served: Path, dest: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name = "2D_diff-react_NA_NA.h5"
    out = dest / name
    known = _md5(served / name)
    with serve_directory(served) as server:
        fetch(server.url(name), known, out, progress=False)
        os.utime(out, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
        before = out.stat()
        with caplog.at_level(logging.INFO, logger="sdkd.download"):
            fetch(server.url(name), known, out, progress=False)
        assert server.requests == 1
    after = out.stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)
    assert any("already present" in r.getMessage() for r in caplog.records)


def test_existing_corrupt_file_is_replaced(served: Path, dest: Path) -> None:
    name = "NavierStokes_V1e-5_N1200_T20.mat"
    out = dest / name
    out.write_bytes(b"not the file")
    with serve_directory(served) as server:
        fetch(server.url(name), _md5(served / name), out, progress=False)
        assert server.requests == 1
    assert out.read_bytes() == (served / name).read_bytes()
    assert _listing(dest) == [name]


def test_existing_corrupt_file_is_removed_when_the_download_fails(served: Path, dest: Path) -> None:
    # pooch alone keeps the old file when the update fails; it must not survive as
    # something that looks like a finished download.
    name = "NavierStokes_V1e-5_N1200_T20.mat"
    out = dest / name
    out.write_bytes(b"not the file")
    with serve_directory(served, truncate=True) as server, pytest.raises(SdkdError):
        fetch(server.url(name), _md5(served / name), out, progress=False, retries=0)
    assert _listing(dest) == []


def test_interrupt_leaves_nothing(
    served: Path, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(url: str, output_file: str, _pooch: object) -> None:
        with open(output_file, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "_downloader_for", lambda url, **kwargs: interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch("http://127.0.0.1:9/f.h5", "md5:" + "0" * 32, dest / "f.h5", progress=False)
    assert _listing(dest) == []


def test_file_url(served: Path, dest: Path) -> None:
    source = served / "2D_diff-react_NA_NA.h5"
    out = dest / source.name
    fetch(source.as_uri(), _md5(source), out, progress=False)
    assert out.read_bytes() == source.read_bytes()


# --- resolve and the registry -----------------------------------------------------------


def test_resolve_registry_name() -> None:
    remote = resolve({"name": "pdebench_diff_react"})
    assert remote is REGISTRY["pdebench_diff_react"]
    assert remote.url == "https://darus.uni-stuttgart.de/api/access/datafile/133017"
    assert remote.known_hash == "md5:b8d0b86064193195ddc30c33be5dc949"
    assert remote.filename == "2D_diff-react_NA_NA.h5"
    assert remote.layout == "pdebench"


def test_resolve_mirror_keeps_checksum() -> None:
    mirror = "https://mirror.example.org/pdebench/2D_rdb_NA_NA.h5"
    remote = resolve({"name": "pdebench_shallow_water", "url": mirror, "variable": "u"})
    entry = REGISTRY["pdebench_shallow_water"]
    assert remote.url == mirror
    assert (remote.known_hash, remote.filename, remote.layout) == (
        entry.known_hash,
        entry.filename,
        entry.layout,
    )
    assert entry.url != mirror  # the registry itself is untouched


def test_resolve_ad_hoc_url() -> None:
    spec = {
        "url": "https://example.org/data/NavierStokes_V1e-5_N1200_T20.mat?download=1#x",
        "known_hash": "sha256:" + "a" * 64,
        "layout": "fno_mat",
        "variable": "u",
    }
    remote = resolve(spec)
    assert isinstance(remote, RemoteFile)
    assert remote.filename == "NavierStokes_V1e-5_N1200_T20.mat"
    assert (remote.url, remote.known_hash, remote.layout) == (
        spec["url"],
        spec["known_hash"],
        "fno_mat",
    )
    assert resolve({**spec, "filename": "ns.mat"}).filename == "ns.mat"


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        ({"name": "pdebench_nope"}, "pdebench_diff_react, pdebench_shallow_water"),
        ({"url": "https://example.org/dir/", "known_hash": "md5:" + "0" * 32,
          "layout": "pdebench"}, "filename"),
        ({"url": "https://example.org/f.h5", "layout": "pdebench"}, "missing known_hash"),
        ({"url": "https://example.org/f.h5", "known_hash": "md5:" + "0" * 32,
          "layout": "netcdf"}, "layout"),
        ({"url": "https://example.org/f.h5", "known_hash": "md5:12", "layout": "pdebench"},
         "bad known_hash"),
        ({"url": "gopher://example.org/f.h5", "known_hash": "md5:" + "0" * 32,
          "layout": "pdebench"}, "bad download URL"),
        ({"name": "pdebench_diff_react", "known_hash": "md5:" + "0" * 32}, "registry"),
    ],
)  # fmt: skip
def test_resolve_errors(spec: dict, pattern: str) -> None:
    with pytest.raises(SdkdError, match=re.escape(pattern)):
        resolve(spec)


def test_registry_entries_are_well_formed() -> None:
    assert {"pdebench_diff_react", "pdebench_shallow_water"} <= set(REGISTRY)
    for name, entry in REGISTRY.items():
        assert entry.name == name
        assert re.fullmatch(r"md5:[0-9a-f]{32}", entry.known_hash), entry.known_hash
        assert entry.url.startswith("https://")
        assert entry.layout in download.LAYOUTS
        assert entry.filename.endswith(".h5") and "/" not in entry.filename
        assert entry.description
