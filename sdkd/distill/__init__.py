"""Frequency-aligned knowledge distillation: spectral bands and the distillation losses."""

from sdkd.distill.bands import SpectralBands, radial_wavenumber
from sdkd.distill.losses import FREQUENCY_SETTINGS, SETTINGS, DistillLoss

__all__ = ["FREQUENCY_SETTINGS", "SETTINGS", "DistillLoss", "SpectralBands", "radial_wavenumber"]
