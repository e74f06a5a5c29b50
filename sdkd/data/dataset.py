"""Forecasting windows over the canonical HDF5, as a torch ``Dataset``.

A window is ``in_steps`` consecutive frames followed by the next ``out_steps``;
windows start every ``window_stride`` frames of a trajectory and never cross from one
trajectory (or split) into another, nor, for data on a calendar, a gap in the time
stamps (a dropped day of traffic counts). Samples are normalised per channel with the
train-split statistics stored in the file.

Nothing in a canonical file is trusted unchecked: the split's rank and dtype, the
window attributes (positive integers), one channel name, mean and std per channel (std
positive and finite), and, before a split is read whole (``in_memory``), its size
against ``limits.max_array_gib``. A file that fails says so in one line and asks for
``sdkd preprocess`` again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from sdkd.data.calendar import window_starts
from sdkd.data.limits import DEFAULT_MAX_GIB, H5_ERRORS, check_array, first_line
from sdkd.data.preprocess import SPLITS
from sdkd.errors import SdkdError

REQUIRED_ATTRS = ("mean", "std", "in_steps", "out_steps", "window_stride", "channels")

# Attributes that say which program wrote a file, not what is in it.
_PROVENANCE_ONLY = ("created_with",)


def fingerprint(path: str | Path) -> str:
    """The sha256 that names the content of a canonical dataset, read in milliseconds.

    It hashes the file's attributes (the raw file's sha256, the source, the window
    keys, the train-split statistics, dt and dx) and every split's shape, not the
    frames: preprocessing is a function of the raw file and these keys, so two files
    with equal fingerprints hold the same windows. A training run's identity
    (:func:`sdkd.plan.run_identity`) carries it, so a teacher trained on other data is
    never resumed or reused.
    """
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _plain(v) for k, v in f.attrs.items() if k not in _PROVENANCE_ONLY}
            splits = {s: f.get(f"{s}/frames") for s in SPLITS}
            shapes = {
                s: list(d.shape)
                for s, d in splits.items()
                if isinstance(d, h5py.Dataset) and d.shape is not None
            }
    except H5_ERRORS as exc:
        raise SdkdError(f"{path}: cannot open as HDF5 ({first_line(exc)})") from None
    text = json.dumps({"attrs": attrs, "shapes": shapes}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value: object) -> object:
    """An HDF5 attribute value as JSON data (arrays → lists, bytes → str)."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.ndim else _plain(value.item())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


class ForecastWindows(Dataset):
    """Normalised (input, target) windows of one split.

    Each item is a pair of float32 tensors ``x`` of shape (T_in, C, H, W) and ``y`` of
    shape (T_out, C, H, W), in normalised units: ``(frame - mean[c]) / std[c]``.

    ``mask`` is None, or for a grid padded to the models' size a bool (H, W) tensor,
    True on the data's pixels: losses and metrics count only those.

    The HDF5 file is opened lazily in each process, so the dataset can be handed to a
    ``DataLoader`` with workers (an h5py handle must not cross a fork).

    Args:
        path: canonical HDF5 written by ``sdkd preprocess``.
        split: ``train``, ``val`` or ``test``.
        in_steps, out_steps, window_stride: override the values stored in the file.
        in_memory: read the whole split into RAM once (small data, fastest epochs).
        max_gib: the largest split (GiB as float32) ``in_memory`` may read,
            ``limits.max_array_gib``.
    """

    def __init__(
        self,
        path: str | Path,
        split: str,
        *,
        in_steps: int | None = None,
        out_steps: int | None = None,
        window_stride: int | None = None,
        in_memory: bool = False,
        max_gib: float = DEFAULT_MAX_GIB,
    ) -> None:
        if split not in SPLITS:
            raise SdkdError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
        self.path = Path(path)
        self.split = split
        self._file: h5py.File | None = None
        self._memory = None
        attrs, shape = self._read_header()
        self.in_steps = in_steps or self._count(attrs, "in_steps")
        self.out_steps = out_steps or self._count(attrs, "out_steps")
        self.window_stride = window_stride or self._count(attrs, "window_stride")
        channels = shape[2]
        names = self._per_channel(attrs, "channels", channels, "SUO", "channel names")
        self.channels = [str(c) for c in names]
        mean = self._per_channel(attrs, "mean", channels, "fiu", "numbers").astype(np.float64)
        std = self._per_channel(attrs, "std", channels, "fiu", "numbers").astype(np.float64)
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise self._bad(f"attributes mean {mean.tolist()} and std {std.tolist()} "
                            "must be finite, std positive")
        self.mean = torch.as_tensor(mean, dtype=torch.float32)
        self.std = torch.as_tensor(std, dtype=torch.float32)
        self.n_trajectories, self.n_frames = shape[0], shape[1]
        self.frame_shape = tuple(shape[2:])
        span = self.in_steps + self.out_steps
        if span > self.n_frames:
            raise SdkdError(
                f"{self.path}: {split} trajectories have {self.n_frames} frames, too few for "
                f"in_steps + out_steps = {span}"
            )
        # Every trajectory of a split shares its time stamps, so one list of window
        # starts serves all; a gap in the stamps ends the windows before it.
        self.starts = window_starts(self._read_times(), self.n_frames, span,
                                    self.window_stride)
        if len(self.starts) == 0:
            raise SdkdError(
                f"{self.path}: the {split} split's {self.n_frames} frames hold no gap-free "
                f"run of in_steps + out_steps = {span}"
            )
        self.starts_per_trajectory = len(self.starts)
        self.mask = self._read_mask()
        self._pid: int | None = None
        if in_memory:
            check_array(shape, max_gib, f"{self.path}: /{split}/frames read whole (in_memory)",
                        "train with in_memory: false")
            self._memory = self._read(lambda frames: frames[()])
            self._close()

    def _read_times(self) -> np.ndarray | None:
        """The split's time stamps as ``datetime64[s]`` (T,), None when it has none."""
        name = f"{self.split}/time_stamps"
        try:
            with h5py.File(self.path, "r") as f:
                stamps = f.get(name)
                if stamps is None:
                    return None
                if (
                    not isinstance(stamps, h5py.Dataset)
                    or stamps.shape != (self.n_frames,)
                    or stamps.dtype.kind not in "iu"
                ):
                    raise self._bad(f"/{name} is not {self.n_frames} integer time stamps")
                times = stamps[()].astype("datetime64[s]")
        except H5_ERRORS as exc:
            raise SdkdError(f"{self.path}: cannot read /{name} ({first_line(exc)})") from None
        if not (np.diff(times) > np.timedelta64(0, "s")).all():
            raise self._bad(f"/{name} is not strictly increasing")
        return times

    def _read_mask(self) -> torch.Tensor | None:
        """The validity mask (H, W), bool, True where a pixel is data; None when every
        pixel is (only a padded grid has one, see :mod:`sdkd.data.grid`)."""
        try:
            with h5py.File(self.path, "r") as f:
                mask = f.get("mask")
                if mask is None:
                    return None
                if (
                    not isinstance(mask, h5py.Dataset)
                    or mask.shape != self.frame_shape[1:]
                    or mask.dtype.kind not in "biu"
                ):
                    raise self._bad(
                        f"/mask is {getattr(mask, 'dtype', 'a group')} of shape "
                        f"{getattr(mask, 'shape', None)}, expected {self.frame_shape[1:]} 0/1"
                    )
                valid = torch.from_numpy(mask[()].astype(bool))
        except H5_ERRORS as exc:
            raise SdkdError(f"{self.path}: cannot read /mask ({first_line(exc)})") from None
        if not valid.any():
            raise self._bad("/mask leaves no valid pixel")
        return valid

    def _bad(self, what: str) -> SdkdError:
        return SdkdError(
            f"{self.path}: not a canonical sdkd dataset ({what}); run `sdkd preprocess` again"
        )

    def _count(self, attrs: dict[str, Any], name: str) -> int:
        """A window attribute: a positive integer."""
        value = np.asarray(attrs[name])
        if value.shape != () or value.dtype.kind not in "iu" or value < 1:
            raise self._bad(f"attribute {name} is {value.tolist()!r}, expected a positive integer")
        return int(value)

    def _per_channel(
        self, attrs: dict[str, Any], name: str, channels: int, kinds: str, what: str
    ) -> np.ndarray:
        """An attribute with one entry per channel, of a dtype kind in ``kinds``."""
        value = np.asarray(attrs[name])
        if value.shape != (channels,) or value.dtype.kind not in kinds:
            raise self._bad(
                f"attribute {name} is {value.tolist()!r}, expected {channels} {what}, one per "
                "channel of the frames"
            )
        return value

    def _read_header(self) -> tuple[dict, tuple[int, ...]]:
        if not self.path.exists():
            raise SdkdError(f"{self.path}: dataset file not found")
        try:
            with h5py.File(self.path, "r") as f:
                missing = [a for a in REQUIRED_ATTRS if a not in f.attrs]
                frames = f.get(f"{self.split}/frames")
                if missing or not isinstance(frames, h5py.Dataset):
                    what = ", ".join(missing) or f"/{self.split}/frames"
                    raise SdkdError(
                        f"{self.path}: not a canonical sdkd dataset (missing {what}); "
                        "run `sdkd preprocess`"
                    )
                shape = frames.shape or ()
                if len(shape) != 5 or frames.dtype.kind != "f" or math.prod(shape) == 0:
                    raise self._bad(
                        f"/{self.split}/frames is {frames.dtype} of shape {frames.shape}, "
                        "expected float (N, T, C, H, W) with no empty axis"
                    )
                return dict(f.attrs), shape
        except H5_ERRORS as exc:
            raise SdkdError(f"{self.path}: cannot open as HDF5 ({first_line(exc)})") from None

    def _read(self, select: Callable[[h5py.Dataset], np.ndarray]) -> np.ndarray:
        try:
            return select(self._frames())
        except H5_ERRORS as exc:  # a file cut short or damaged since it was opened
            raise SdkdError(
                f"{self.path}: cannot read /{self.split}/frames ({first_line(exc)}); "
                "run `sdkd preprocess` again"
            ) from None

    def _frames(self) -> h5py.Dataset:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file[f"{self.split}/frames"]

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None

    def __getstate__(self) -> dict:
        # Workers reopen the file themselves; an open h5py handle does not pickle.
        state = self.__dict__.copy()
        state["_file"] = None
        return state

    def __len__(self) -> int:
        return self.n_trajectories * self.starts_per_trajectory

    def window(self, index: int) -> tuple[int, int]:
        """(trajectory, first frame) of window ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        trajectory, k = divmod(index, self.starts_per_trajectory)
        return trajectory, int(self.starts[k])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        trajectory, start = self.window(index)
        stop = start + self.in_steps + self.out_steps
        if self._memory is not None:
            window = self._memory[trajectory, start:stop]
        else:
            window = self._read(lambda frames: frames[trajectory, start:stop])
        frames = torch.from_numpy(np.asarray(window, dtype=np.float32))
        frames = self.normalize(frames)
        return frames[: self.in_steps], frames[self.in_steps :]

    def normalize(self, frames: torch.Tensor) -> torch.Tensor:
        """Physical units → normalised; channels on dim -3 of (..., C, H, W)."""
        return (frames - self._stat(self.mean, frames)) / self._stat(self.std, frames)

    def denormalize(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalised → physical units; channels on dim -3 of (..., C, H, W)."""
        return frames * self._stat(self.std, frames) + self._stat(self.mean, frames)

    @staticmethod
    def _stat(stat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return stat.to(like.device, like.dtype)[:, None, None]

    def __del__(self) -> None:
        self._close()
