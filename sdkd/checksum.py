"""File checksums for provenance (raw data, checkpoints)."""

from __future__ import annotations

import hashlib
import os


def sha256sum(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks so any size fits in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
