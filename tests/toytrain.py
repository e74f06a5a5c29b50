"""A toy training problem for the engine's tests: tiny data, a tiny model, one loss."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from sdkd.train import TrainConfig, runfolder

T, C, H, W = 2, 1, 8, 8
CPU = torch.device("cpu")
COLUMNS = ["epoch", "train_loss", "val_loss", "train_mse", "train_mae", "val_mse", "val_mae",
           "lr", "seconds", "samples_per_s", "peak_rss_mb", "device"]


class Tiny(nn.Module):
    """(B, T, C, H, W) → (B, T, C, H, W): two convolutions over T·C channels, with dropout."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(T * C, width, 3, padding=1), nn.GELU(), nn.Dropout(0.2),
            nn.Conv2d(width, T * C, 3, padding=1),
        )

    def forward(self, x):
        b = x.shape[0]
        return self.net(x.reshape(b, T * C, H, W)).reshape(b, T, C, H, W)


class Pairs(Dataset):
    """x → a fixed local filter of x, plus a little numpy noise (so numpy's RNG matters too)."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, T, C, H, W, generator=g)
        self.y = 0.5 * (self.x + self.x.roll(1, dims=-1)).flip(1)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        noise = torch.from_numpy(np.random.standard_normal((T, C, H, W)).astype("f4"))
        return self.x[i] + 0.01 * noise, self.y[i]


def mse_loss(model, x, y):
    pred = model(x)
    mse = F.mse_loss(pred, y)
    return mse, {"mse": mse, "mae": (pred - y).abs().mean()}


def model(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    return Tiny()


TRAIN, VAL = Pairs(32, 1), Pairs(16, 2)
META = {"dataset": "toy", "channels": C, "in_steps": T, "out_steps": T, "grid": (H, W)}


def config(**overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": 4, "batch_size": 8, "lr": 1e-2, **overrides})


class Killed(Exception):
    """What a SIGKILL would do to a run, as an exception."""


def killed_after_the_first_epoch(monkeypatch, train: Callable[[], object]) -> None:
    """Call ``train`` until it has written its first last.pt, then kill it (:class:`Killed`)."""
    real_save = runfolder.save_checkpoint

    def dying(path, payload):
        real_save(path, payload)
        if path.name == "last.pt":
            raise Killed

    monkeypatch.setattr(runfolder, "save_checkpoint", dying)
    with pytest.raises(Killed):
        train()
    monkeypatch.setattr(runfolder, "save_checkpoint", real_save)
