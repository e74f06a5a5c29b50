"""Checksummed, atomic downloads of named public files, built on :mod:`pooch`.

``fetch`` is the only function that touches the network. It either leaves a file whose
checksum was verified at ``out`` or raises :class:`~sdkd.errors.SdkdError` with one line
and leaves nothing at ``out``: pipeline tools (Snakemake, DVC) treat any file at an
output path as finished, so a partial or unverified file must never be visible there.

How pooch stages a download (checked against pooch 1.9): it creates ``tmpXXXXXXXX`` with
:func:`tempfile.NamedTemporaryFile` in the *destination directory*, streams into it,
checks the hash, and only then moves it onto the final name; a ``finally`` block removes
the temporary file on any exception (hash mismatch, HTTP error, truncated body,
Ctrl-C). Three gaps remain, handled here:

* a pre-existing file with the wrong hash is kept by pooch when the re-download fails,
  so it is removed before downloading;
* the temporary file is created with mode 0600, so the final file would be unreadable
  to the group; the mode is reset from the umask after the move;
* a process killed with SIGKILL cannot clean up, and pooch's ``tmpXXXXXXXX`` may remain
  beside ``out``. It never carries ``out``'s name, so it cannot be mistaken for a
  finished download; the temporary name is logged at DEBUG so it can be traced.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import re
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pooch
import requests

from sdkd.atomic import apply_umask
from sdkd.errors import SdkdError

log = logging.getLogger("sdkd.download")

LAYOUTS = ("pdebench", "fno_mat", "taxibj")

# Hex digest lengths of the algorithms we accept. Checked before any byte is
# transferred: pooch only validates the algorithm after the whole download.
_HASH_HEX_LENGTH = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}

# Multi-gigabyte files: pooch's default 1 KiB chunks cost a Python call per KiB.
_CHUNK_SIZE = 1 << 20

# Seconds before retry ``i`` (1-based) is ``_RETRY_WAIT_S * i``; module level so tests
# can set it to 0.
_RETRY_WAIT_S = 2.0

_SCHEMES = ("http", "https", "ftp", "file")


# --- validation (RemoteFile uses these, so they come first) -------------------------


def _parse_hash(known_hash: object) -> tuple[str, str]:
    """Split ``"md5:abc…"`` into ``("md5", "abc…")`` (lower case), or raise."""
    expected = "'<algorithm>:<hex digest>' with algorithm md5, sha1, sha256 or sha512"
    if not isinstance(known_hash, str) or ":" not in known_hash:
        # pooch would read a bare digest as sha256; an md5 pasted without its prefix
        # would then fail only after the whole download, so demand the prefix.
        raise SdkdError(f"bad known_hash {known_hash!r}: expected {expected}")
    algorithm, _, digest = known_hash.partition(":")
    algorithm, digest = algorithm.strip().lower(), digest.strip().lower()
    length = _HASH_HEX_LENGTH.get(algorithm)
    if length is None or not re.fullmatch(f"[0-9a-f]{{{length}}}", digest):
        detail = f" ({algorithm} has {length} hex digits)" if length else ""
        raise SdkdError(f"bad known_hash {known_hash!r}: expected {expected}{detail}")
    return algorithm, digest


def _check_url(url: object) -> None:
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme.lower() not in _SCHEMES:
        raise SdkdError(f"bad download URL {url!r}: expected an {'/'.join(_SCHEMES)} URL")
    split = urllib.parse.urlsplit(url)
    if split.scheme.lower() != "file" and not split.netloc:
        raise SdkdError(f"bad download URL {url!r}: no host")


def _url_basename(url: str) -> str:
    # urlsplit separates the query and fragment, so "f.h5?dl=1" gives "f.h5".
    name = posixpath.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    if not name or name in (".", ".."):
        raise SdkdError(
            f"download: cannot take a file name from URL {url!r}; give 'filename' explicitly"
        )
    return name


def _check_filename(filename: object, url: str) -> None:
    if (
        not isinstance(filename, str)
        or filename in ("", ".", "..")
        or "/" in filename
        or "\\" in filename
        or "\0" in filename
    ):
        raise SdkdError(
            f"download from {url}: bad filename {filename!r}; expected a plain file name"
        )


@dataclass(frozen=True)
class RemoteFile:
    """A public file: where it lives, its checksum and how to read it.

    Attributes:
        name: registry key (for ad-hoc files, the file name).
        url: where to download it from (http, https, ftp or file).
        known_hash: checksum in pooch's form, ``"md5:<hex>"`` or ``"sha256:<hex>"``.
        filename: the name to store it under; public names keep checksums recognisable.
        layout: raw layout, ``"pdebench"``, ``"fno_mat"`` (:mod:`sdkd.data.raw`) or
            ``"taxibj"`` (:mod:`sdkd.data.taxibj`).
        description: one line for ``sdkd sources``.
        size: the file's size, as its publisher states it (for ``sdkd sources``).
        licence: the terms it is published under (for ``sdkd sources``).
    """

    name: str
    url: str
    known_hash: str
    filename: str
    layout: str
    description: str = ""
    size: str = "unknown"
    licence: str = "see the publisher"

    def __post_init__(self) -> None:
        # Checked at construction so a bad config fails at resolve time, before any
        # download or pipeline step starts.
        _check_url(self.url)
        _parse_hash(self.known_hash)
        _check_filename(self.filename, self.url)
        if self.layout not in LAYOUTS:
            raise SdkdError(
                f"download {self.name!r}: layout {self.layout!r} is not one of {', '.join(LAYOUTS)}"
            )


REGISTRY: dict[str, RemoteFile] = {
    entry.name: entry
    for entry in (
        RemoteFile(
            name="pdebench_diff_react",
            url="https://darus.uni-stuttgart.de/api/access/datafile/133017",
            known_hash="md5:b8d0b86064193195ddc30c33be5dc949",
            filename="2D_diff-react_NA_NA.h5",
            layout="pdebench",
            description="PDEBench 2-D diffusion-reaction (FitzHugh-Nagumo), 2 channels (u, v)",
            size="13 GB",
            licence="CC BY 4.0 (PDEBench on DaRUS)",
        ),
        RemoteFile(
            name="pdebench_shallow_water",
            url="https://darus.uni-stuttgart.de/api/access/datafile/133021",
            known_hash="md5:75d838c47aa410694bdc912ea7f22282",
            filename="2D_rdb_NA_NA.h5",
            layout="pdebench",
            description="PDEBench 2-D shallow water, radial dam break, 1 channel (h)",
            size="6.2 GB",
            licence="CC BY 4.0 (PDEBench on DaRUS)",
        ),
    )
}


def resolve(spec: Mapping[str, Any]) -> RemoteFile:
    """The file a ``download`` config block names.

    ``{"name": ..., "url": mirror?, "filename": ...?}`` selects a registry entry, with
    the URL (and file name) optionally replaced; the checksum always stays the
    registry's, which is what makes a mirror safe to use. ``{"url", "known_hash",
    "layout", "filename"?}`` describes any other file; its name defaults to the last
    segment of the URL path. Other keys (such as an ``fno_mat`` ``variable``) are
    ignored: they concern the reader, not the download.
    """
    if not isinstance(spec, Mapping):
        raise SdkdError(f"download: expected a mapping, got {type(spec).__name__}")
    for key in ("name", "url", "known_hash", "layout", "filename"):
        if key in spec and not isinstance(spec[key], str):
            raise SdkdError(f"download.{key}: expected a string, got {spec[key]!r}")

    if "name" in spec:
        name = spec["name"]
        if name not in REGISTRY:
            raise SdkdError(
                f"download.name: unknown file {name!r}; known names: {', '.join(sorted(REGISTRY))}"
            )
        clash = [key for key in ("known_hash", "layout") if key in spec]
        if clash:
            # A named file's checksum and layout are fixed; silently preferring one
            # source over the other would hide a config mistake.
            raise SdkdError(
                f"download: {' and '.join(clash)} cannot be given with name {name!r} "
                "(they come from the registry); give a url, known_hash and layout instead"
            )
        changes = {key: spec[key] for key in ("url", "filename") if spec.get(key)}
        return replace(REGISTRY[name], **changes) if changes else REGISTRY[name]

    missing = [key for key in ("url", "known_hash", "layout") if not spec.get(key)]
    if missing:
        raise SdkdError(
            f"download: missing {', '.join(missing)}; give either a name "
            f"({', '.join(sorted(REGISTRY))}) or url, known_hash and layout"
        )
    url = spec["url"]
    filename = spec.get("filename") or _url_basename(url)
    return RemoteFile(
        name=filename,
        url=url,
        known_hash=spec["known_hash"],
        filename=filename,
        layout=spec["layout"],
        description=f"ad-hoc file from {url}",
    )


def fetch(
    url: str,
    known_hash: str,
    out: Path,
    *,
    progress: bool = True,
    timeout: float = 60,
    retries: int = 2,
) -> Path:
    """Download ``url`` to ``out`` and verify it against ``known_hash``.

    Nothing is transferred when ``out`` already has the right checksum. A file with the
    wrong checksum is removed and downloaded again. Connection errors, time-outs,
    truncated transfers and HTTP 5xx/429 are retried ``retries`` times with a growing
    pause; a checksum mismatch is not, since it almost always means the file on the
    server changed or the hash is wrong, and the files here are gigabytes.

    Args:
        url: http(s), ftp or file URL.
        known_hash: ``"<algorithm>:<hex digest>"`` with md5, sha1, sha256 or sha512.
        out: the destination; its directory is created if needed.
        progress: show a tqdm progress bar (http(s) and ftp only).
        timeout: seconds to wait to connect and between received chunks, not for the
            whole transfer.
        retries: further attempts after a transient failure.

    Returns:
        ``out``.

    Raises:
        SdkdError: one line naming the URL and/or ``out`` and what was expected; in
            that case nothing exists at ``out`` and no temporary file is left.
    """
    out = Path(out)
    algorithm, digest = _parse_hash(known_hash)
    _check_url(url)
    if timeout <= 0:
        raise SdkdError(f"download timeout must be positive, got {timeout}")
    if retries < 0:
        raise SdkdError(f"download retries must be >= 0, got {retries}")

    if out.is_symlink() or out.exists():
        if not out.is_file():
            raise SdkdError(f"cannot download to {out}: it exists and is not a regular file")
        actual = _hash_of(out, algorithm)
        if actual == digest:
            log.info("%s already present with %s %s; not downloading", out, algorithm, digest)
            return out
        log.warning(
            "%s exists but its %s is %s, not %s; downloading it again",
            out,
            algorithm,
            actual,
            digest,
        )
        # Removed now rather than on success: pooch keeps the old file when the new
        # download fails, and a wrong file at ``out`` would pass for a finished one.
        _remove(out)

    downloader = _Recording(_downloader_for(url, progress=progress, timeout=timeout))
    for attempt in range(retries + 1):
        try:
            log.info("downloading %s to %s", url, out)
            with _quiet_pooch():
                pooch.retrieve(
                    url,
                    known_hash=f"{algorithm}:{digest}",
                    fname=out.name,
                    path=out.parent,
                    downloader=downloader,
                    progressbar=progress,
                )
        except BaseException as error:
            # pooch removes its temporary file itself; this covers versions or code
            # paths where it does not, and a KeyboardInterrupt arriving mid-cleanup.
            downloader.remove_temporaries()
            if not isinstance(error, Exception):
                raise
            message, transient = _explain(error, url, out, algorithm, digest, timeout)
            if not transient or attempt == retries:
                raise SdkdError(message) from error
            wait = _RETRY_WAIT_S * (attempt + 1)
            log.warning("%s; retrying in %.0f s (%d left)", message, wait, retries - attempt)
            time.sleep(wait)
        else:
            break
    with contextlib.suppress(OSError):
        apply_umask(out)  # pooch's temporary file was 0600
    log.info("downloaded %s (%s %s)", out, algorithm, digest)
    return out


# --- helpers -------------------------------------------------------------------------


def _hash_of(path: Path, algorithm: str) -> str:
    try:
        return pooch.file_hash(str(path), alg=algorithm).lower()
    except OSError as error:
        raise SdkdError(f"cannot read {path} to check its {algorithm}: {error.strerror}") from error


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        raise SdkdError(f"cannot remove the stale {path}: {error.strerror}") from error


Downloader = Callable[[str, str, Any], Any]


def _downloader_for(url: str, *, progress: bool, timeout: float) -> Downloader:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        # ``timeout`` goes to requests.get: it bounds connecting and each read, so a
        # stalled server fails instead of hanging a pipeline job forever.
        return pooch.HTTPDownloader(progressbar=progress, chunk_size=_CHUNK_SIZE, timeout=timeout)
    if scheme == "ftp":
        return pooch.FTPDownloader(progressbar=progress, chunk_size=_CHUNK_SIZE, timeout=timeout)
    return _copy_file_url  # pooch has no file:// downloader; mirrors on shared disks do


def _copy_file_url(url: str, output_file: str, _pooch: Any) -> None:
    source = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
    with open(source, "rb") as src, open(output_file, "wb") as dst:
        shutil.copyfileobj(src, dst, _CHUNK_SIZE)


class _Recording:
    """Wraps a pooch downloader to learn the temporary file pooch hands it."""

    def __init__(self, downloader: Downloader) -> None:
        self._downloader = downloader
        self._temporaries: list[str] = []

    def __call__(self, url: str, output_file: str, pooch_: Any) -> Any:
        self._temporaries.append(output_file)
        log.debug("staging %s in %s", url, output_file)
        return self._downloader(url, output_file, pooch_)

    def remove_temporaries(self) -> None:
        for name in self._temporaries:
            with contextlib.suppress(OSError):
                os.remove(name)
        self._temporaries.clear()


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    # pooch's logger is outside the logging hierarchy and prints straight to stderr;
    # "sdkd.download" already reports the same events through the user's logging setup.
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


_MISMATCH = re.compile(r"expected (\S+) but got (\S+?)\.?(\s|$)")
_INCOMPLETE = re.compile(r"IncompleteRead\((\d+) bytes read, (\d+) more expected")
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\"\)]+)")


def _explain(
    error: Exception, url: str, out: Path, algorithm: str, digest: str, timeout: float
) -> tuple[str, bool]:
    """One line for ``error`` and whether another attempt could succeed."""
    if isinstance(error, requests.HTTPError) and error.response is not None:
        status = error.response.status_code
        reason = error.response.reason or ""
        return (
            f"HTTP {status} {reason} from {url} (expected 200 with the file for {out})".replace(
                "  ", " "
            ),
            status >= 500 or status == 429,
        )
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        found = _INCOMPLETE.search(str(error))
        got = ""
        if found:
            done, left = int(found.group(1)), int(found.group(2))
            got = f" (got {done} of {done + left} bytes)"
        return (
            f"download of {url} was cut short: the server closed the connection before "
            f"sending the Content-Length it announced{got}; {out} was not written",
            True,
        )
    if isinstance(error, requests.Timeout):
        return f"no response from {url} within {timeout:g} s; {out} was not written", True
    if isinstance(error, requests.ConnectionError):
        found = _ERRNO.search(str(error))
        reason = found.group(1).strip() if found else type(error).__name__
        return f"cannot connect to {url}: {reason}; {out} was not written", True
    if isinstance(error, requests.RequestException):
        return f"cannot download {url}: {_one_line(error)}", False
    if isinstance(error, ValueError) and "does not match the known hash" in str(error):
        found = _MISMATCH.search(str(error))
        actual = found.group(2) if found else "a different hash"
        return (
            f"checksum mismatch for {url}: expected {algorithm}:{digest}, got "
            f"{algorithm}:{actual}; {out} was not written (the file on the server changed "
            "or the known hash is wrong)",
            False,
        )
    if isinstance(error, OSError):
        target = error.filename or out
        return f"cannot download {url} to {out}: {target}: {error.strerror or error}", False
    return f"cannot download {url} to {out}: {_one_line(error)}", False


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__
