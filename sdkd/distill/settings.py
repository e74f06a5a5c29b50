"""Band settings from config: the ``{bands}`` wildcard → the loss that trains a student.

A key of ``distill.settings`` names one student run per student and seed. The key is
the method itself (``none``, ``low``, ``high``, ``dual``, ``multi``, ``sdkd_latent``,
``decoupled``, ``output``, ``fitnet``) or, with ``setting:``, a named variant of one
(``dual_c8: {setting: dual, cutoffs: [8]}``) for ablations. ``lam``, ``latent_weight``,
``output_weight``, ``normalize_bands``, ``standardize_latents`` and ``seeds`` default to
the ``distill`` block's values; a ``tune:`` grid leaves some of them to the tuning stage
(:mod:`sdkd.tuning`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sdkd import plan
from sdkd.distill.losses import DistillLoss
from sdkd.errors import SdkdError


@dataclass(frozen=True)
class BandSetting(plan.BandSetting):
    """One resolved band setting (:class:`sdkd.plan.BandSetting`) and the loss it trains with.

    The resolution from config lives in :mod:`sdkd.plan`, which the Snakefile imports
    without torch; this subclass only adds :meth:`loss`.
    """

    def loss(self, *, student_channels: int, teacher_channels: int) -> DistillLoss:
        """The distillation objective of this setting (ground truth + λ · KD)."""
        try:
            return DistillLoss(
                self.setting,
                student_channels=student_channels,
                teacher_channels=teacher_channels,
                cutoffs=self.cutoffs,
                band_weights=self.weights,
                band_features=self.features,
                lam=self.lam,
                latent_weight=self.latent_weight,
                output_weight=self.output_weight,
                normalize_bands=self.normalize_bands,
                standardize_latents=self.standardize_latents,
            )
        except SdkdError as exc:
            raise SdkdError(f"distill.settings.{self.key}: {exc}") from None


def band_setting(distill: Mapping[str, Any], key: str) -> BandSetting:
    """Resolve ``distill.settings[key]`` with the block's defaults (see sdkd.plan)."""
    return BandSetting(**plan.band_setting(distill, key).values())


def check_settings(distill: Mapping[str, Any]) -> None:
    """Build every setting's loss once, and once per point of its tuning grid, so that a
    bad one fails before any training."""
    for key in distill["settings"]:
        setting = band_setting(distill, key)
        setting.loss(student_channels=1, teacher_channels=1)
        for point, values in enumerate(setting.points()):
            try:
                setting.with_values(values).loss(student_channels=1, teacher_channels=1)
            except SdkdError as exc:
                raise SdkdError(f"{exc} (tuning point {point}: {values})") from None
