"""Distillation objectives: ground truth plus a frequency-aligned (or baseline) KD term.

The student is trained on

    total = MSE(student prediction, target) + λ · KD

where KD depends on the band setting (``SETTINGS``):

* ``none``: KD = 0. The student alone, the baseline every gain is measured against. The
  loss holds no parameters and the teacher may be ``None``.
* ``low`` / ``high``: a 2-band split at one cutoff; only the low (resp. high) band is
  aligned.
* ``dual``: the low and the high band of a 2-band split at one cutoff aligned
  separately, each with its own weight, in the latent *and* in the forecast: our
  extension of the paper's method (the forecast-level bands are our choice).
* ``multi``: K = len(cutoffs) + 1 bands, one weight each, latent and forecast.
* ``sdkd_latent``: the paper's method as its abstract states it: "multi-scale spectral
  features from the teacher's latent space, including both high and low frequency
  components". K = len(cutoffs) + 1 latent bands, one weight each, and no forecast
  term.
* ``decoupled``: ``sdkd_latent`` with two bands, the low band aligned to the teacher's
  attention path (``attn_path``, its "global low-frequency modeler") and the high band
  to its convolution path (``conv_path``): the paper's decoupling made testable (our
  reading of it; the abstract does not say that the student's bands align to the
  paths).
* ``output``: KD = MSE(student prediction, teacher prediction) (response distillation).
* ``fitnet``: KD = MSE(P(student latent), teacher latent) (FitNets hints), no frequency
  split.

For the frequency settings (``FREQUENCY_SETTINGS``)

    KD = Σ_b w_b · [ latent_weight · band_mse_b(P_f(b)(s_latent), N_f(b)(t_f(b)))
                     + output_weight · band_mse_b(s_pred, t_pred) ]

with ``band_mse`` of :class:`~sdkd.distill.bands.SpectralBands`: the mean squared error
restricted to band b, so that the bands of a plain MSE add up (Σ_b band_mse_b = MSE).
For ``low``/``high`` the weight of the other band is 0; ``sdkd_latent`` and
``decoupled`` have no forecast term. f(b) is the teacher feature band b is aligned to
(``band_features``: ``latent`` for every band unless the setting names others;
``decoupled``: ``attn_path``, ``conv_path``), P_f a learned projection per teacher
feature and N_f its standardisation (below, or the identity).

Choices the paper leaves open, and ours:

* **Cutoffs** are radial wavenumbers in cycles per domain (see ``sdkd.distill.bands``:
  half-open bands, mean mode in band 0). They are required for the frequency settings
  (no silent default: the report must state them) and ignored by the others. The *same*
  cutoffs are used on the latent grid and on the output grid: both grids cover the whole
  domain, so in cycles per domain band b means the same physical scales on both (an
  8 × 8 latent simply cannot represent |k| beyond its Nyquist limit). The cutoffs must
  leave every band non-empty on the latent grid; a cutoff the latent is too coarse for
  raises :class:`~sdkd.errors.SdkdError` at the first forward pass.
* **Band weights** default to 1 for every aligned band. ``low``/``high`` take one
  weight (that of the aligned band), ``dual`` two (low, high), ``multi``
  len(cutoffs) + 1. Weights, ``lam`` and ``output_weight`` must be finite and ≥ 0.
* **Output-level bands.** The prediction (B, T_out, C, H, W) is split frame by frame:
  every (T_out · C) map of every sample is one 2-D field, and band MSEs are averaged over
  all of them. ``latent_weight`` and ``output_weight`` scale the latent-level and the
  output-level term in the frequency settings only (``output`` is weighted by ``lam``
  alone). They exist because the two terms live on different scales: a latent holds
  unnormalised activations whose squared error can be 100 × the normalised field's,
  and with equal weights the latent term would drown the forecast error.
* **Projection P** is a learned 1 × 1 convolution (with bias) from ``student_channels``
  to ``teacher_channels``, applied to the student latent ``features[feature]``
  (default ``"latent"``) in the frequency settings and ``fitnet``; one per teacher
  feature aligned to (``projections``, keyed by its name). It is part of this
  module, so its parameters must be handed to the optimiser with the student's.
  ``none`` and ``output`` have no projection and no parameters.
* **Latent standardisation** (``standardize_latents=True``): each teacher feature is
  standardised per channel, (t − μ_c) / σ_c, with the mean and standard deviation of
  that channel over the training windows and the latent grid
  (:meth:`DistillLoss.set_teacher_statistics`, computed by the job from the frozen
  teacher). The latent terms then compare fields of unit variance, on the scale of
  the normalised forecast, so that ``latent_weight = 1`` means "as important as the
  forecast" instead of the ~100 × larger raw activations needing a hand-set factor.
  A per-channel affine change of the teacher's features (a > 0) changes no loss
  value. Until the statistics are set such a loss refuses to run.
* **Grid mismatch.** If the student and teacher latent grids differ, the projected
  student latent is resized to the *teacher's* grid (bilinear, align_corners=False,
  the pixel-centre convention under which both grids cover the same domain; with
  anti-aliasing when shrinking so that no student detail aliases into low bands). We
  move the student to the teacher, not the teacher to the student, because the
  teacher's spectrum is the reference: its bands are not blurred or aliased by any
  resampling, and the student is asked to reproduce them. (1 × 1 projection and
  resampling commute, as both are linear per pixel and the bilinear weights sum to 1.)
* **Band normalisation** (``normalize_bands=True``, default off): each band's term is
  divided by the teacher's energy in that band, mean(t_b²) averaged over the batch
  (detached), plus ``norm_eps`` times the teacher's total energy (and 1e-12), so a
  band with little energy (usually the high band, whose raw MSE is tiny) is not
  drowned by the low band, while a band the teacher leaves (almost) empty is amplified
  by at most 1/``norm_eps``. The latent and the output terms are normalised by the
  teacher's latent and prediction band energies respectively.
* **Validity mask** (``forward(..., mask=)``, bool (H, W), True on the data's pixels
  of a grid padded to the models' size; None: every pixel counts, and the loss is
  bit-identical to one without the argument). Padded pixels count in no output-space
  term: ``gt`` and ``output`` are :func:`masked_mse`, the mean over valid pixels ×
  channels × times × batch; the output band terms set the padded pixels of the student
  and the teacher forecast to zero before the FFT and count energy per valid pixel
  (:meth:`~sdkd.distill.bands.SpectralBands.band_mse` with ``mask``), so by Parseval the
  bands of a unit-weight split add up to the masked MSE, as without a mask they add up
  to the MSE; the band-normalising energies of ``normalize_bands`` are taken the same
  way. Whatever the padded pixels hold (NaN included) changes no loss value, and no
  gradient reaches them. The **latent** terms (``fitnet`` and the latent bands) stay
  unmasked: a latent cell of the H/4 × W/4 grid is a feature of a 4 × 4 (and, through
  the encoder, wider) neighbourhood, not a pixel, so cells at the edge of the data mix
  valid and padded pixels and no mask of them would be exact; the teacher's features
  there are a function of its input alone (the padding of the input is the data's
  edge, repeated), never of a padded target, so matching them everywhere asks the
  student for the teacher's representation and not for any padded value.
* **Teacher is frozen**: its prediction and features are ``.detach()``-ed here, so no
  gradient reaches the teacher even if the caller forgets ``torch.no_grad``. Gradients
  flow to the student and to P.
* **Precision**: half-precision fields are upcast to float32 before the FFT.

``forward`` returns ``(total, terms)``; ``terms`` holds detached scalars: ``gt``, ``kd``
(the weighted, possibly normalised KD before λ), ``total``, and per band the raw band
MSEs ``kd_latent_b{i}`` and ``kd_out_b{i}`` (every band, also those with weight 0, for
monitoring), or ``kd_latent`` (fitnet) / ``kd_out`` (output).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sdkd.distill.bands import SpectralBands, check_mask, validate_cutoffs
from sdkd.errors import SdkdError
from sdkd.plan import (
    DECOUPLED_FEATURES,
    FREQUENCY_SETTINGS,
    LATENT_ONLY_SETTINGS,
    SETTINGS,
)

__all__ = [
    "DECOUPLED_FEATURES", "FREQUENCY_SETTINGS", "LATENT_ONLY_SETTINGS", "SETTINGS",
    "DistillLoss", "masked_mse",
]

def masked_mse(
    a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error of fields (…, H, W), over the valid pixels of ``mask``.

    ``mask`` is None (``F.mse_loss(a, b)`` itself, bit for bit) or a bool (H, W) tensor,
    True on the data's pixels: then the mean is over valid pixels × every leading
    dimension (channels, times, batch), half precision is computed in float32, and the
    padded pixels (whatever they hold, NaN included) change neither the value nor get a
    gradient. Units: those of ``a`` squared.
    """
    if mask is None:
        return F.mse_loss(a, b)
    check_mask(mask, a)
    a, b = (v.float() if v.dtype in (torch.float16, torch.bfloat16) else v for v in (a, b))
    squared = torch.where(mask, a - b, 0.0).square()
    # Every leading index (sample, time, channel) holds the same valid pixels.
    valid = mask.sum(dtype=squared.dtype) * (squared.numel() // mask.numel())
    return squared.sum() / valid


def _nonnegative(value: Any, key: str) -> float:
    if isinstance(value, bool):
        raise SdkdError(f"{key}: expected a finite number ≥ 0, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SdkdError(f"{key}: expected a finite number ≥ 0, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise SdkdError(f"{key}: expected a finite number ≥ 0, got {value!r}")
    return v


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SdkdError(f"{key}: expected a positive integer (channels), got {value!r}")
    return value


def _unpack(forecast: Any, who: str) -> tuple[torch.Tensor, Mapping[str, torch.Tensor]]:
    """(prediction, features) of a Forecast-like object (attributes or a 2-tuple)."""
    if hasattr(forecast, "prediction") and hasattr(forecast, "features"):
        prediction, features = forecast.prediction, forecast.features
    elif isinstance(forecast, tuple | list) and len(forecast) == 2:
        prediction, features = forecast
    else:
        raise SdkdError(
            f"{who}: expected a Forecast with .prediction and .features, "
            f"got {type(forecast).__name__}"
        )
    if not isinstance(prediction, torch.Tensor):
        raise SdkdError(f"{who}.prediction: expected a tensor, got {type(prediction).__name__}")
    return prediction, features


class _Standardizer(nn.Module):
    """(t − mean) / std per channel of a feature (B, D, h, w); NaN until set.

    ``ready`` is a host-side flag, set with the statistics (or a loaded state dict),
    so that the check at every step costs no device synchronisation."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("mean", torch.full((channels,), math.nan))
        self.register_buffer("std", torch.full((channels,), math.nan))
        self.ready = False
        self.register_load_state_dict_post_hook(lambda module, _: module.check())

    def set(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std)
        self.check()

    def check(self) -> None:
        self.ready = bool(torch.isfinite(self.mean).all() and torch.isfinite(self.std).all())

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, 1, 1)
        return (t - self.mean.view(shape)) / self.std.view(shape)


class DistillLoss(nn.Module):
    """Ground-truth MSE plus λ times a distillation term (see the module docstring).

    Args:
        setting: one of ``SETTINGS``.
        student_channels, teacher_channels: channels D_s, D_t of the student's
            ``features[feature]`` and of each teacher feature aligned to; every 1 × 1
            projection maps D_s → D_t.
        cutoffs: radial wavenumbers (cycles per domain), strictly increasing, > 0;
            exactly one for ``low``/``high``/``dual``/``decoupled``, one or more for
            ``multi``/``sdkd_latent``; ignored by the other settings.
        band_weights: ``low``/``high``: 1 weight; ``dual``/``decoupled``: 2;
            ``multi``/``sdkd_latent``: len(cutoffs) + 1. Default: all 1. Ignored by the
            other settings.
        band_features: the teacher feature each band's latent term aligns to, one name
            per band (len(cutoffs) + 1); default ``feature`` for every band
            (``decoupled``: :data:`DECOUPLED_FEATURES`). Frequency settings only.
        lam: weight λ of the whole KD term.
        latent_weight: weight of the latent-level band terms (frequency settings).
        output_weight: weight of the output-level band terms (frequency settings that
            have them).
        feature: key of the student's latent in ``Forecast.features``, and the default
            teacher feature.
        normalize_bands: divide each band's term by the teacher's band energy.
        norm_eps: relative floor of that energy, as a fraction of the teacher's total.
        standardize_latents: standardise each teacher feature per channel with the
            statistics given to :meth:`set_teacher_statistics`.
    """

    def __init__(
        self,
        setting: str,
        *,
        student_channels: int,
        teacher_channels: int,
        cutoffs: Sequence[float] | None = None,
        band_weights: Sequence[float] | None = None,
        band_features: Sequence[str] | None = None,
        lam: float = 1.0,
        latent_weight: float = 1.0,
        output_weight: float = 1.0,
        feature: str = "latent",
        normalize_bands: bool = False,
        norm_eps: float = 1e-4,
        standardize_latents: bool = False,
    ):
        super().__init__()
        if setting not in SETTINGS:
            raise SdkdError(f"setting: expected one of {', '.join(SETTINGS)}, got {setting!r}")
        if not isinstance(feature, str) or not feature:
            raise SdkdError(f"feature: expected the name of a model feature, got {feature!r}")
        self.setting = setting
        self.student_channels = _positive_int(student_channels, "student_channels")
        self.teacher_channels = _positive_int(teacher_channels, "teacher_channels")
        self.lam = _nonnegative(lam, "lam")
        self.latent_weight = _nonnegative(latent_weight, "latent_weight")
        self.output_weight = _nonnegative(output_weight, "output_weight")
        self.feature = feature
        self.normalize_bands = bool(normalize_bands)
        self.norm_eps = _nonnegative(norm_eps, "norm_eps")
        self.standardize_latents = bool(standardize_latents)

        self.bands: SpectralBands | None = None
        self.band_weights: tuple[float, ...] = ()
        self.band_features: tuple[str, ...] = ()
        if setting in FREQUENCY_SETTINGS:
            self.bands, self.band_weights = self._band_settings(setting, cutoffs, band_weights)
            self.band_features = self._features(setting, band_features)
            self.register_buffer(
                "_weights",
                torch.tensor(self.band_weights, dtype=torch.float32),
                persistent=False,
            )
        elif band_features is not None:
            raise SdkdError(f"features: setting {setting!r} has no bands to align")
        self.projections = nn.ModuleDict({
            name: nn.Conv2d(self.student_channels, self.teacher_channels, 1)
            for name in self.teacher_features
        })
        self.standardizers = nn.ModuleDict({
            name: _Standardizer(self.teacher_channels)
            for name in (self.teacher_features if self.standardize_latents else ())
        })

    @property
    def teacher_features(self) -> tuple[str, ...]:
        """The teacher features the KD term reads, each once, in band order."""
        if self.setting == "fitnet":
            return (self.feature,)
        return tuple(dict.fromkeys(self.band_features))

    def _features(self, setting: str, given: Sequence[str] | None) -> tuple[str, ...]:
        assert self.bands is not None
        k = self.bands.num_bands
        if given is None:
            return DECOUPLED_FEATURES if setting == "decoupled" else (self.feature,) * k
        if isinstance(given, str | bytes) or len(given) != k:
            raise SdkdError(
                f"features: setting {setting!r} has {k} bands, expected one teacher "
                f"feature per band, got {given!r}"
            )
        if not all(isinstance(name, str) and name for name in given):
            raise SdkdError(f"features: expected names of teacher features, got {given!r}")
        return tuple(given)

    @staticmethod
    def _band_settings(
        setting: str, cutoffs: Sequence[float] | None, band_weights: Sequence[float] | None
    ) -> tuple[SpectralBands, tuple[float, ...]]:
        several = setting in ("multi", "sdkd_latent")
        if cutoffs is None:
            need = "one or more cutoffs" if several else "exactly one cutoff"
            raise SdkdError(
                f"cutoffs: setting {setting!r} needs {need} (radial wavenumber in cycles "
                f"per domain), got none"
            )
        values = validate_cutoffs(cutoffs)
        if not several and len(values) != 1:
            raise SdkdError(
                f"cutoffs: setting {setting!r} splits into two bands at exactly one cutoff, "
                f"got {list(values)}"
            )
        k = len(values) + 1
        n_weights = 1 if setting in ("low", "high") else k
        if band_weights is None:
            weights = [1.0] * n_weights
        else:
            if isinstance(band_weights, str | bytes):
                raise SdkdError(f"band_weights: expected a list of numbers, got {band_weights!r}")
            try:
                weights = list(band_weights)
            except TypeError:
                raise SdkdError(
                    f"band_weights: expected a list of numbers, got {band_weights!r}"
                ) from None
            if len(weights) != n_weights:
                what = {"low": "1 (the low band's)", "high": "1 (the high band's)",
                        "dual": "2 (low, high)", "decoupled": "2 (low, high)"}.get(
                    setting, f"{k} (len(cutoffs) + 1)")
                raise SdkdError(
                    f"band_weights: setting {setting!r} with cutoffs {list(values)} expects "
                    f"{what} weights, got {len(weights)}: {weights}"
                )
            weights = [_nonnegative(w, "band_weights") for w in weights]
        if setting == "low":
            weights = [weights[0], 0.0]
        elif setting == "high":
            weights = [0.0, weights[0]]
        return SpectralBands(values), tuple(weights)

    def extra_repr(self) -> str:
        parts = [f"setting={self.setting!r}", f"lam={self.lam:g}"]
        if self.bands is not None:
            parts += [
                f"cutoffs={list(self.bands.cutoffs)}",
                f"band_weights={list(self.band_weights)}",
                f"band_features={list(self.band_features)}",
                f"latent_weight={self.latent_weight:g}",
                f"output_weight={self.output_weight:g}",
                f"normalize_bands={self.normalize_bands}",
            ]
        if self.projections:
            parts += [f"feature={self.feature!r}",
                      f"standardize_latents={self.standardize_latents}"]
        return ", ".join(parts)

    def set_teacher_statistics(
        self, statistics: Mapping[str, tuple[torch.Tensor, torch.Tensor]]
    ) -> None:
        """Per-channel (mean, std), each (D_t,), of every teacher feature in
        :attr:`teacher_features`, over the training windows; used when
        ``standardize_latents``. A std is floored at 1e-6 of the feature's largest (a
        dead channel is centred, not blown up)."""
        for name, standardizer in self.standardizers.items():
            if name not in statistics:
                raise SdkdError(f"teacher statistics: feature {name!r} is missing")
            mean, std = (torch.as_tensor(v).detach().flatten().to(standardizer.mean)
                         for v in statistics[name])
            if mean.numel() != self.teacher_channels or std.numel() != self.teacher_channels:
                raise SdkdError(
                    f"teacher statistics of {name!r}: expected {self.teacher_channels} "
                    f"channels, got {mean.numel()} means and {std.numel()} stds"
                )
            if not (torch.isfinite(mean).all() and torch.isfinite(std).all()) or (std < 0).any():
                raise SdkdError(f"teacher statistics of {name!r}: not finite or std < 0")
            standardizer.set(mean, std.clamp_min(1e-6 * float(std.max()) + 1e-12))

    # ------------------------------------------------------------------ helpers

    def _latent(self, features: Any, who: str, name: str, channels: int) -> torch.Tensor:
        if not isinstance(features, Mapping) or name not in features:
            have = sorted(features) if isinstance(features, Mapping) else type(features).__name__
            raise SdkdError(
                f"feature: {who}.features[{name!r}] is missing; expected a latent "
                f"of shape (B, {channels}, h, w), the model returned {have}"
            )
        latent = features[name]
        if not isinstance(latent, torch.Tensor) or latent.ndim != 4:
            shape = tuple(latent.shape) if isinstance(latent, torch.Tensor) else latent
            raise SdkdError(
                f"feature: {who}.features[{name!r}] expected shape "
                f"(B, {channels}, h, w), got {shape}"
            )
        if latent.shape[1] != channels:
            key = f"{who}_channels"
            raise SdkdError(
                f"{key}: {who}.features[{name!r}] has {latent.shape[1]} channels, "
                f"expected {channels} as declared"
            )
        return latent

    def _aligned_latents(
        self, s_features: Any, t_features: Any, batch: int
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per teacher feature name: P(student latent), resized to the teacher's grid, and
        the detached (standardised, if asked) teacher feature."""
        s = self._latent(s_features, "student", self.feature, self.student_channels)
        aligned = {}
        for name in self.teacher_features:
            t = self._latent(t_features, "teacher", name, self.teacher_channels).detach()
            if s.shape[0] != t.shape[0] or s.shape[0] != batch:
                raise SdkdError(
                    f"feature: batch sizes differ: student latent {s.shape[0]}, teacher "
                    f"feature {name!r} {t.shape[0]}, prediction {batch}"
                )
            if name in self.standardizers:
                standardizer = self.standardizers[name]
                if not standardizer.ready:
                    raise SdkdError(
                        f"teacher feature {name!r}: standardize_latents needs its training "
                        "statistics; call set_teacher_statistics first"
                    )
                t = standardizer(t)
            p = self.projections[name](s)
            if p.shape[-2:] != t.shape[-2:]:
                shrink = p.shape[-2] > t.shape[-2] or p.shape[-1] > t.shape[-1]
                p = F.interpolate(
                    p,
                    size=tuple(t.shape[-2:]),
                    mode="bilinear",
                    align_corners=False,
                    antialias=shrink,
                )
            aligned[name] = (p, t)
        return aligned

    def _band_terms(
        self, a: torch.Tensor, ref: torch.Tensor, where: str, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw per-band MSE (K,) of ``a`` against ``ref`` (…, H, W), over the valid pixels
        of ``mask`` when given, and the same, normalised if asked."""
        assert self.bands is not None
        h, w = ref.shape[-2:]
        try:
            self.bands.masks(h, w, ref.device)
        except SdkdError as err:
            raise SdkdError(f"{err} [grid of {where}]") from None
        raw = self.bands.band_mse(a, ref, mask)
        if not self.normalize_bands:
            return raw, raw
        energy = self.bands.band_energy(ref, mask).flatten(1).mean(1)
        floor = self.norm_eps * energy.sum() + 1e-12
        return raw, raw / (energy + floor)

    # ------------------------------------------------------------------ forward

    def forward(
        self, student: Any, teacher: Any, target: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its named, detached terms.

        Args:
            student: Forecast-like, ``prediction`` (B, T_out, C, H, W) and ``features``.
            teacher: Forecast-like of the same prediction shape (``None`` allowed for
                ``none``); used detached.
            target: ground truth, the shape of the student's prediction.
            mask: None, or bool (H, W) on the predictions' device, True on the data's
                pixels: the output-space terms count only those (module docstring).
        """
        s_pred, s_features = _unpack(student, "student")
        if not isinstance(target, torch.Tensor) or target.shape != s_pred.shape:
            shape = tuple(target.shape) if isinstance(target, torch.Tensor) else target
            raise SdkdError(
                f"target: expected the shape of the student prediction {tuple(s_pred.shape)}, "
                f"got {shape}"
            )
        gt = masked_mse(s_pred, target, mask)
        terms: dict[str, torch.Tensor] = {"gt": gt.detach()}

        if self.setting == "none":
            kd = torch.zeros((), dtype=gt.dtype, device=gt.device)
        else:
            if teacher is None:
                raise SdkdError(f"teacher: setting {self.setting!r} needs the teacher's forecast")
            t_pred, t_features = _unpack(teacher, "teacher")
            t_pred = t_pred.detach()
            if t_pred.shape != s_pred.shape:
                raise SdkdError(
                    f"teacher.prediction: expected the student's shape {tuple(s_pred.shape)}, "
                    f"got {tuple(t_pred.shape)}"
                )
            if self.setting == "output":
                kd = masked_mse(s_pred, t_pred, mask)
                terms["kd_out"] = kd.detach()
            else:
                aligned = self._aligned_latents(s_features, t_features, s_pred.shape[0])
                if self.setting == "fitnet":
                    kd = F.mse_loss(*aligned[self.feature])  # a latent: unmasked (docstring)
                    terms["kd_latent"] = kd.detach()
                else:
                    kd = self._frequency_kd(aligned, s_pred, t_pred, terms, mask)

        total = gt + self.lam * kd
        terms["kd"] = kd.detach()
        terms["total"] = total.detach()
        return total, terms

    def _frequency_kd(
        self,
        aligned: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
        s_pred: torch.Tensor,
        t_pred: torch.Tensor,
        terms: dict[str, torch.Tensor],
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """The weighted band KD; fills ``terms`` with the raw band MSEs.

        ``aligned``: per teacher feature, the projected student latent and the teacher
        feature (B, D_t, h, w), unmasked; band b takes its term from the feature it is
        aligned to. ``s_pred``, ``t_pred``: forecasts (B, T_out, C, H, W), over
        ``mask``'s pixels.
        """
        per_feature = {
            name: self._band_terms(p, t, f"the teacher feature features[{name!r}]")
            for name, (p, t) in aligned.items()
        }
        bands = range(len(self.band_features))
        lat_raw = torch.stack([per_feature[f][0][b] for b, f in enumerate(self.band_features)])
        lat = torch.stack([per_feature[f][1][b] for b, f in enumerate(self.band_features)])
        for b in bands:
            terms[f"kd_latent_b{b}"] = lat_raw[b].detach()
        weights = self._weights.to(dtype=lat.dtype)
        if self.setting in LATENT_ONLY_SETTINGS:
            return (weights * self.latent_weight * lat).sum()
        h, w = s_pred.shape[-2:]
        # Every (T_out · C) frame map of every sample is one 2-D field.
        s_frames = s_pred.reshape(-1, h, w)
        t_frames = t_pred.reshape(-1, h, w)
        out_raw, out = self._band_terms(s_frames, t_frames, "the prediction", mask)
        for b in bands:
            terms[f"kd_out_b{b}"] = out_raw[b].detach()
        return (weights * (self.latent_weight * lat + self.output_weight * out.to(lat.dtype))).sum()
