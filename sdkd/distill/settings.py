"""Band settings from config: the ``{bands}`` wildcard → the loss that trains a student.

A key of ``distill.settings`` names one student run per student and seed. The key is
the method itself (``none``, ``low``, ``high``, ``dual``, ``multi``, ``output``,
``fitnet``) or, with ``setting:``, a named variant of one (``dual_c8: {setting: dual,
cutoffs: [8]}``) for ablations. ``lam``, ``output_weight``, ``normalize_bands`` and
``seeds`` default to the ``distill`` block's values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sdkd.distill.losses import SETTINGS, DistillLoss
from sdkd.errors import SdkdError


@dataclass(frozen=True)
class BandSetting:
    """One resolved band setting (see the module docstring)."""

    key: str
    setting: str
    cutoffs: tuple[float, ...] | None
    weights: tuple[float, ...] | None
    lam: float
    output_weight: float
    normalize_bands: bool
    seeds: tuple[int, ...]

    def loss(self, *, student_channels: int, teacher_channels: int) -> DistillLoss:
        """The distillation objective of this setting (ground truth + λ · KD)."""
        try:
            return DistillLoss(
                self.setting,
                student_channels=student_channels,
                teacher_channels=teacher_channels,
                cutoffs=self.cutoffs,
                band_weights=self.weights,
                lam=self.lam,
                output_weight=self.output_weight,
                normalize_bands=self.normalize_bands,
            )
        except SdkdError as exc:
            raise SdkdError(f"distill.settings.{self.key}: {exc}") from None


def band_setting(distill: Mapping[str, Any], key: str) -> BandSetting:
    """Resolve ``distill.settings[key]`` with the block's defaults."""
    settings = distill["settings"]
    if key not in settings:
        raise SdkdError(
            f"unknown band setting {key!r}: config defines {', '.join(settings)}"
        )
    entry = settings[key]
    setting = entry.get("setting", key)
    if setting not in SETTINGS:
        raise SdkdError(
            f"distill.settings.{key}: {key!r} is not a method ({', '.join(SETTINGS)}); "
            "name the method with `setting:` to make it a variant"
        )
    cutoffs, weights = entry.get("cutoffs"), entry.get("weights")
    return BandSetting(
        key=key,
        setting=setting,
        cutoffs=tuple(cutoffs) if cutoffs is not None else None,
        weights=tuple(weights) if weights is not None else None,
        lam=entry.get("lam", distill["lam"]),
        output_weight=entry.get("output_weight", distill["output_weight"]),
        normalize_bands=entry.get("normalize_bands", distill["normalize_bands"]),
        seeds=tuple(entry.get("seeds", distill["seeds"])),
    )


def check_settings(distill: Mapping[str, Any]) -> None:
    """Build every setting's loss once so a bad one fails before any training."""
    for key in distill["settings"]:
        band_setting(distill, key).loss(student_channels=1, teacher_channels=1)
