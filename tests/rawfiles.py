"""Small files in the real raw layouts, and a loopback HTTP server to download them from.

The layouts copy the public files byte-for-byte in structure (group and dataset names,
shapes, dtypes, MATLAB attributes, the MAT-file user block) at a tiny size, so readers
and downloads are tested against what they will meet, not a simplified stand-in.
Each writer returns the data in the order a correct reader must produce.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np


def write_pdebench(
    path: str | Path,
    n_seeds: int = 3,
    t: int = 6,
    n: int = 8,
    channels: int = 2,
    seed: int = 0,
) -> np.ndarray:
    """Write a PDEBench 2-D per-seed file like ``2D_diff-react_NA_NA.h5``.

    Layout: groups ``"0000"``, ``"0001"``, … each with ``data`` float32 [T, X, Y, C]
    and ``grid/x`` (X,), ``grid/y`` (Y,), ``grid/t`` (T,), float32. x and y are cell
    centres on [-1, 1]; t is linspace(0, 5, T).

    Returns:
        The data as (N, T, C, H, W) float32 with H from X and W from Y.
    """
    rng = np.random.default_rng(seed)
    edges = np.linspace(-1.0, 1.0, n + 1)
    centres = ((edges[:-1] + edges[1:]) / 2).astype(np.float32)
    times = np.linspace(0.0, 5.0, t).astype(np.float32)
    data = rng.standard_normal((n_seeds, t, n, n, channels)).astype(np.float32)
    # Make X and Y distinguishable so a reader that swaps them fails the comparison.
    data += np.arange(n, dtype=np.float32)[None, None, :, None, None]
    with h5py.File(path, "w") as f:
        for i in range(n_seeds):
            group = f.create_group(f"{i:04d}")
            group.create_dataset("data", data=data[i])
            grid = group.create_group("grid")
            grid.create_dataset("x", data=centres)
            grid.create_dataset("y", data=centres)
            grid.create_dataset("t", data=times)
    return np.ascontiguousarray(data.transpose(0, 1, 4, 2, 3))


_MAT_HEADER_TEXT = (
    "MATLAB 7.3 MAT-file, Platform: GLNXA64, "
    "Created on: Wed Jan 11 09:21:35 2021 HDF5 schema 1.00 ."
)


def _mat73_header() -> bytes:
    # MAT-file header: 116 bytes of text, 8 bytes subsystem offset, version 0x0200
    # (v7.3) and the endian indicator "IM" (little-endian), 128 bytes in all.
    text = _MAT_HEADER_TEXT.encode("ascii").ljust(116, b" ")
    return text + b" " * 8 + b"\x00\x02" + b"IM"


def _matlab_dataset(f: h5py.File, name: str, matlab_array: np.ndarray) -> None:
    # MATLAB is column-major: an array it calls (a, b, c) is stored as HDF5 (c, b, a).
    dataset = f.create_dataset(name, data=np.ascontiguousarray(matlab_array.transpose()))
    matlab_class = {np.float32: "single", np.float64: "double"}[matlab_array.dtype.type]
    dataset.attrs["MATLAB_class"] = np.bytes_(matlab_class)


def write_fno_mat(
    path: str | Path, n: int = 4, t: int = 5, res: int = 8, seed: int = 0
) -> np.ndarray:
    """Write a MATLAB v7.3 file like FNO's ``NavierStokes_V1e-5_N1200_T20.mat``.

    An HDF5 file with a 512-byte user block that starts with the MAT-file header, and
    datasets ``a`` (MATLAB (N, res, res), single), ``u`` (MATLAB (N, res, res, T),
    single) and ``t`` (MATLAB (1, T), double), each with its axes reversed in HDF5 and
    a ``MATLAB_class`` attribute.

    Returns:
        ``u`` as (N, T, res, res) float32, spatial axes in MATLAB order: the HDF5 data
        transposed with axes (3, 0, 2, 1).
    """
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, res, res)).astype(np.float32)
    u = rng.standard_normal((n, res, res, t)).astype(np.float32)
    # Distinguishable spatial axes, as in write_pdebench.
    u += np.arange(res, dtype=np.float32)[None, :, None, None]
    times = np.arange(1, t + 1, dtype=np.float64)[None, :]
    with h5py.File(path, "w", userblock_size=512) as f:
        _matlab_dataset(f, "a", a)
        _matlab_dataset(f, "u", u)
        _matlab_dataset(f, "t", times)
    # HDF5 leaves the user block zeroed; MATLAB (and scipy.io) identify the file by it.
    with open(path, "r+b") as raw:
        raw.write(_mat73_header())
    return np.ascontiguousarray(u.transpose(0, 3, 1, 2))


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1, used as a context manager; the OS picks the
    port. Subclasses give the request handler (:meth:`handler`)."""

    _server: http.server.ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def handler(self) -> Callable[..., http.server.BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return self._server.server_address[1]

    def __enter__(self):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        server.daemon_threads = True  # a stuck client cannot keep the test process alive
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None
        self._thread = None


class FileServer(LoopbackServer):
    """A threaded HTTP server on 127.0.0.1 serving the files of one directory.

    Use as a context manager; the port is chosen by the OS. Fault modes (attributes,
    so a test may change them between requests):

    * ``status``: answer every GET with this HTTP status and no file;
    * ``truncate``: send the full ``Content-Length`` but only the first half of the
      body, then close the connection;
    * ``fail_first``: answer the first this-many GETs with 503, then serve normally.

    ``requests`` counts GETs received and ``paths`` lists their paths.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        status: int | None = None,
        truncate: bool = False,
        fail_first: int = 0,
    ) -> None:
        self.directory = Path(directory).resolve()
        self.status = status
        self.truncate = truncate
        self.fail_first = fail_first
        self.requests = 0
        self.paths: list[str] = []
        self._lock = threading.Lock()

    def url(self, name: str) -> str:
        """The URL of file ``name`` in the served directory."""
        return f"http://127.0.0.1:{self.port}/{urllib.parse.quote(name)}"

    def handler(self) -> Callable[..., http.server.BaseHTTPRequestHandler]:
        return _make_handler(self)

    def _count(self, path: str) -> int:
        with self._lock:
            self.requests += 1
            self.paths.append(path)
            return self.requests


def _make_handler(owner: FileServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = 10  # socket timeout, so a silent client cannot hold a thread forever

        def do_GET(self) -> None:
            number = owner._count(self.path)
            if number <= owner.fail_first:
                self.send_error(503, "failing on purpose")
                return
            if owner.status is not None:
                self.send_error(owner.status)
                return
            name = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
            file = (owner.directory / name).resolve()
            if file.parent != owner.directory or not file.is_file():
                self.send_error(404)
                return
            body = file.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if owner.truncate:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep pytest output clean

    return Handler


@contextlib.contextmanager
def serve_directory(directory: str | Path, **faults: object) -> Iterator[FileServer]:
    """``with serve_directory(d, truncate=True) as server: server.url("f.h5")``."""
    with FileServer(directory, **faults) as server:  # type: ignore[arg-type]
        yield server
