"""Checkpoint files: written atomically, read back safely, checked against what the caller expects.

A checkpoint is a ``dict`` saved with ``torch.save``. Everything in it is plain data
(tensors, numbers, strings, lists, dicts), so it loads with ``torch.load(weights_only=True)``:
reading a checkpoint never runs code from the file. The engine keeps this true by
storing RNG states as tensors and lists (not numpy arrays) and by passing ``meta``
through JSON before saving it.

Every checkpoint carries ``format_version`` (:data:`FORMAT_VERSION`) and ``meta``, the
caller's description of what the weights belong to (dataset, channels, in/out steps,
grid, model spec, ...). :func:`load_checkpoint` compares ``meta`` with an ``expect``
dict so that, say, a teacher trained on one dataset is never silently used on another.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sdkd.atomic import atomic_path
from sdkd.errors import SdkdError

FORMAT_VERSION = 1
"""Bumped whenever the layout of a checkpoint changes in a way old readers cannot follow."""


def plain(value: Any, *, where: str = "meta") -> Any:
    """``value`` as JSON would give it back: tuples become lists, keys become strings.

    Used for ``meta`` so that it saves under ``weights_only`` rules and compares the
    same way after a round trip (``(64, 64)`` equals ``[64, 64]``).
    """
    try:
        return json.loads(json.dumps(value, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise SdkdError(f"{where}: must be JSON-serialisable plain data ({exc})") from None


def save_checkpoint(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """Save ``payload`` (plus ``format_version``) to ``path`` atomically; return the path.

    ``torch.save`` writes a temporary file beside ``path`` that is renamed onto it only
    when complete, so a job killed mid-write leaves the previous checkpoint intact.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format_version": FORMAT_VERSION, **payload}, tmp)
    return path


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    expect: Mapping[str, Any] | None = None,
    what: str = "checkpoint",
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` and check it.

    ``expect`` maps ``meta`` keys to required values, e.g.
    ``{"dataset": "ns", "channels": 1, "in_steps": 10, "out_steps": 10, "grid": [64, 64]}``;
    values are compared after a JSON round trip, so tuples and lists compare equal.
    ``what`` names the file in messages ("teacher checkpoint").

    Raises :class:`SdkdError` when the file is missing, is not a readable torch file
    (truncated, random bytes, a directory, unsafe pickle content), has another format
    version, or its ``meta`` disagrees with ``expect``.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise SdkdError(f"{what} {path}: checkpoint not found") from None
    except Exception as exc:  # any failure to read is a bad file, whatever torch calls it
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        if len(detail) > 200:
            detail = detail[:200] + "…"
        raise SdkdError(f"{what} {path}: corrupt or unreadable checkpoint ({detail})") from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise SdkdError(f"{what} {path}: not an sdkd checkpoint (no format_version)")
    version = payload["format_version"]
    if version != FORMAT_VERSION:
        raise SdkdError(
            f"{what} {path}: checkpoint format version {version!r}, expected {FORMAT_VERSION} "
            "(written by another sdkd version; retrain or convert it)"
        )
    if expect:
        check_meta(payload.get("meta") or {}, expect, where=f"{what} {path}")
    return payload


def check_meta(meta: Mapping[str, Any], expect: Mapping[str, Any], *, where: str) -> None:
    """Raise :class:`SdkdError` naming ``where`` and the first key of ``expect`` that ``meta``
    does not match (missing, or another value)."""
    meta = plain(meta, where=where)
    for key, wanted in plain(dict(expect), where="expect").items():
        if key not in meta:
            raise SdkdError(f"{where} has no meta key {key!r} (expected {key}={wanted!r})")
        found = meta[key]
        if found != wanted:
            if key == "dataset":
                raise SdkdError(f"{where} was trained on dataset {found!r}, expected {wanted!r}")
            raise SdkdError(f"{where} was trained with {key}={found!r}, expected {wanted!r}")


def weights_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """The sha256 of a ``state_dict``'s content: every key, dtype, shape and value.

    It names the weights, not the file that holds them (a checkpoint also stores
    timings, which differ between two runs that learned the same weights); a student's
    run identity carries its teacher's (:func:`sdkd.plan.run_identity`).
    """
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().to("cpu").contiguous()
        digest.update(f"{key}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        # bytes of the flat storage: view as uint8 so every dtype (bf16 too) hashes
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def sub_state_dict(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The part of a ``state_dict`` under ``prefix.``, with the prefix removed.

    For a distillation run that trained ``nn.ModuleDict({"student": s, "projection": p})``,
    ``student.load_state_dict(sub_state_dict(ckpt["model"], "student"))`` restores the student.
    """
    head = prefix.rstrip(".") + "."
    out = {key[len(head):]: value for key, value in state.items() if key.startswith(head)}
    if not out:
        raise SdkdError(f"checkpoint state has no entries under {prefix!r}")
    return out
