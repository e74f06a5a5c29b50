"""A training run's folder on disk: its files, the run they belong to, a lock, staging.

The files (see :mod:`sdkd.train.engine`)::

    best.pt, history.csv, last.pt, config.yaml   committed after every epoch
    done.json                                     written last: the run finished

Every checkpoint and ``done.json`` carry the run's ``identity`` and ``run_id``; files of
another identity belong to another run. Three rules keep a folder's contents whole:

- **One writer.** :meth:`RunFolder.session` holds an exclusive ``flock`` on the folder
  for the whole run; a second process training into the same folder is refused with
  one line instead of mixing its epochs into the first one's files.
- **A finished run is replaced only by a finished run.** A run whose folder holds
  another run's files trains in ``.staging/`` inside it and moves its files in only when
  it has finished (:meth:`RunFolder.finish`); until then every file of the old run stays
  as it was, so a rerun that fails (a full disk, a kill, a bug) destroys nothing.
- **Nothing half-written survives.** Files are written atomically; the temporaries of
  a killed write (``.*.part``) are removed at the next session, and a run that fails
  before its first epoch leaves no folder behind that it created.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from sdkd.atomic import atomic_path
from sdkd.errors import SdkdError
from sdkd.plan import identity_changes, run_id
from sdkd.train.checkpoint import load_checkpoint, plain, save_checkpoint

log = logging.getLogger(__name__)

LAST, BEST, HISTORY, DONE = "last.pt", "best.pt", "history.csv", "done.json"
STAGING = ".staging"
# The files a run commits, in the order a finished staging run moves them in (done.json
# last: until it is there, the folder does not look finished).
RUN_FILES = ("config.yaml", HISTORY, BEST, LAST, DONE)


class RunFolder:
    """The folder ``out_dir`` of the run described by ``meta`` and ``identity``.

    ``attachments`` are text files committed with the run (the resolved config as
    ``config.yaml``). ``work`` is where this session writes: ``out_dir`` itself, or
    ``out_dir/.staging`` while the folder holds another run's files.
    """

    def __init__(
        self, out_dir: str | Path, *, meta: Mapping[str, Any], identity: Mapping[str, Any],
        config: Mapping[str, Any], attachments: Mapping[str, str] | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.staging = self.out_dir / STAGING
        self.work = self.out_dir
        self.meta = plain(dict(meta), where="meta")
        self.identity = plain(dict(identity), where="identity")
        self.run_id = run_id(self.identity)
        self.config = dict(config)
        self.attachments = dict(attachments or {})
        self._told = False  # the identity change was logged (done.json and last.pt agree)

    # ---- the session -------------------------------------------------------------------------

    @contextlib.contextmanager
    def session(self) -> Iterator[RunFolder]:
        """Hold the folder's lock; clean what killed writes left; on failure, remove the
        folders this session created and left empty."""
        created = [d for d in (self.out_dir, *self.out_dir.parents) if not d.exists()]
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise SdkdError(f"{self.out_dir}: is a file, expected a run folder")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.out_dir, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SdkdError(
                    f"{self.out_dir}: another sdkd process is training in this folder; "
                    "wait for it to finish (or stop it) and run again"
                ) from None
            for folder in (self.out_dir, self.staging):
                for temporary in folder.glob(".*.part") if folder.is_dir() else ():
                    temporary.unlink(missing_ok=True)
            try:
                yield self
            except BaseException:
                for folder in (self.staging, *created):  # deepest first
                    with contextlib.suppress(OSError):  # only empty ones go
                        folder.rmdir()
                raise
        finally:
            os.close(fd)  # releases the lock

    # ---- what is there -----------------------------------------------------------------------

    def _stale(self, stored: Mapping[str, Any], path: Path) -> bool:
        """True (and one log line naming what changed) when ``stored`` is another run."""
        changes = identity_changes(stored.get("identity"), self.identity)
        if changes and not self._told:
            self._told = True
            more = f" (+{len(changes) - 3} more)" if len(changes) > 3 else ""
            log.warning("%s belongs to another run (%s%s); training from scratch",
                        path, "; ".join(changes[:3]), more)
        return bool(changes)

    def finished(self, read: Callable[[Path], dict[str, Any]]) -> dict[str, Any] | None:
        """The summary (``done.json``, parsed by ``read``) of a finished run of this
        identity, or None.

        A staged run that finished but was stopped while moving in is moved in now. A
        finished run missing ``best.pt`` or ``history.csv`` (a workflow manager deletes
        declared outputs before a rerun) is not returned: its ``last.pt`` rebuilds them.
        """
        staged = self.staging / DONE
        if staged.exists() and not self._stale(read(staged), staged):
            self.work = self.staging
            self._move_in()
        done = self.out_dir / DONE
        if not done.exists():
            return None
        summary = read(done)
        if self._stale(summary, done):
            return None
        missing = [name for name in (BEST, HISTORY) if not (self.out_dir / name).exists()]
        if missing:
            then = f"rebuilding from {LAST}" if (self.out_dir / LAST).exists() else \
                "training again"
            log.warning("%s: finished, but %s missing; %s", self.out_dir,
                        " and ".join(missing), then)
            return None
        log.info("%s: already finished (best val %.4g at epoch %d)", self.out_dir,
                 summary["best_val"], summary["best_epoch"])
        return summary

    def resumable(self) -> dict[str, Any] | None:
        """The ``last.pt`` of an unfinished run of this identity (in the folder or in
        staging), which then becomes the working folder; None when there is none."""
        for work in (self.out_dir, self.staging):
            last = work / LAST
            if last.exists():
                ckpt = load_checkpoint(last, what="checkpoint")
                if not self._stale(ckpt, last):
                    self.work = work
                    # finished but missing files, or another run's: not finished now
                    (work / DONE).unlink(missing_ok=True)
                    return ckpt
        return None

    def start_fresh(self) -> None:
        """Work in the folder when it holds no run's files, else in a fresh staging
        folder, so that another run's files stay as they are until this run finishes."""
        occupied = any((self.out_dir / name).exists() for name in RUN_FILES)
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.work = self.staging if occupied else self.out_dir
        self.work.mkdir(exist_ok=True)
        if occupied:
            log.info("%s holds another run; training in %s until this one has finished",
                     self.out_dir, self.work)

    # ---- writing -----------------------------------------------------------------------------

    def stamp(self) -> dict[str, Any]:
        """What every checkpoint and summary of this run carries about it."""
        return {"meta": self.meta, "config": self.config, "identity": self.identity,
                "run_id": self.run_id}

    def commit(self, *, best: Mapping[str, Any] | None, history_writer: Callable[[Path], None],
               last: Mapping[str, Any]) -> None:
        """One epoch: ``best.pt`` (when given), the history, the attachments, then
        ``last.pt``, the commit point."""
        if best is not None:
            save_checkpoint(self.work / BEST, best)
        history_writer(self.work / HISTORY)
        for name, text in self.attachments.items():
            with atomic_path(self.work / name) as tmp:
                tmp.write_text(text)
        save_checkpoint(self.work / LAST, last)

    def rebuild(self, best: Mapping[str, Any], history_writer: Callable[[Path], None]) -> None:
        """Back to the commit point of ``last.pt``: ``best.pt`` and the history may be
        missing (deleted by the workflow manager) or one epoch ahead (a kill before
        ``last.pt``)."""
        save_checkpoint(self.work / BEST, best)
        history_writer(self.work / HISTORY)

    def finish(self, summary: Mapping[str, Any]) -> None:
        """Write ``done.json``; a staged run then moves its files into the folder."""
        with atomic_path(self.work / DONE) as tmp:
            tmp.write_text(json.dumps(dict(summary), indent=2) + "\n")
        if self.work == self.staging:
            self._move_in()

    def _move_in(self) -> None:
        """Replace the old run's files with the staged ones: the old ``done.json`` goes
        first and the new one comes last, so a stop in between leaves no folder that
        looks finished, and the next session completes the move (:meth:`finished`)."""
        (self.out_dir / DONE).unlink(missing_ok=True)
        for name in RUN_FILES:
            if (self.staging / name).exists():
                os.replace(self.staging / name, self.out_dir / name)
        shutil.rmtree(self.staging)
        self.work = self.out_dir
        log.info("%s: the finished run replaced the previous one", self.out_dir)
