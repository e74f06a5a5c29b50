"""Batched pseudo-spectral solver for 2-D incompressible Navier–Stokes on the unit torus.

The equation is the vorticity form used by the FNO benchmark data::

    ∂w/∂t + u·∇w = ν Δw + f,    u = ∇^⊥ψ = (∂ψ/∂y, −∂ψ/∂x),    −Δψ = w,

on the periodic domain [0, 1)², with the FNO forcing
``f(x, y) = 0.1 (sin 2π(x + y) + cos 2π(x + y))``.

Conventions (shared by every function in this module):

* A field is a tensor ``w[..., i, j]`` sampled at ``x = i / N``, ``y = j / N``: x runs along the
  second-to-last axis and y along the last axis, as in FNO's ``ns_2d.py``. ``u`` is the
  x-component of velocity, ``v`` the y-component.
* The domain has length 1, so the Laplacian of the Fourier mode ``exp(2πi(kx x + ky y))`` is
  ``−4π²(kx² + ky²)``. Time is in whatever unit ``t_end`` is given in (viscosity is then in
  length²/time, with length 1 the domain size).
* Fourier coefficients use ``norm="forward"`` (``ŵ = N⁻² Σ w``), so a coefficient does not
  depend on the grid size; that makes spectral up/down-sampling a plain copy of modes.
* Dealiasing is the 2/3 rule: only modes with ``|kx| ≤ K`` and ``|ky| ≤ K``, ``K = (N−1)//3``,
  are kept. Quadratic products of such fields alias only onto modes above K, which are
  discarded, so the semi-discrete scheme is an exact Galerkin truncation (it conserves energy
  and enstrophy when ν = 0 and f = 0). The initial field and the forcing are projected onto
  the kept modes for the same reason.

Time stepping is the integrating-factor (Lawson) fourth-order Runge–Kutta scheme: viscosity is
integrated exactly through ``exp(−ν 4π²|k|² h)``, advection and forcing by classical RK4. The
step is chosen per record interval from the CFL condition so that an integer number of equal
steps lands exactly on each record time.

Computation runs in the dtype of the initial field (float32 or float64) on its device, and the
records come back in that dtype. float32 round-off stays near 1e-6 relative over 20 time units
at ν = 1e-3, far inside a 1e-3 accuracy target, and float32 is the faster choice; use float64
for comparisons with exact solutions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sdkd.errors import SdkdError

__all__ = [
    "DEFAULT_CFL",
    "advection",
    "dealias_cutoff",
    "downsample",
    "energy",
    "enstrophy",
    "fno_forcing",
    "gaussian_random_field",
    "record_times",
    "simulate",
    "velocity",
]

# CFL number h·max(|u| + |v|)·N. For pure advection of the 2/3-truncated spectrum |λ| ≤
# 2πK(|u| + |v|) with K ≈ N/3, and RK4 is stable on the imaginary axis up to |λh| ≈ 2.83, which
# bounds the CFL number by ≈ 1.35 in the worst case; measured inviscid runs stay stable to ≈ 1.7
# and viscous damping of the top modes helps further. At ν = 1e-3 the time error at 1.0 is ~1e-7
# relative over 20 time units (benchmarks/solver.py), so stability, not accuracy, sets this.
DEFAULT_CFL = 1.0

# A record interval whose final velocity gives a CFL number above max(_CFL_REJECT, 1.25·cfl) with
# the step that was used is recomputed with a smaller step: the flow sped up too much within the
# interval for the step chosen at its start to be trusted.
_CFL_REJECT = 1.5

_FLOAT_DTYPES = (torch.float32, torch.float64)


# ---------------------------------------------------------------------------------------------
# Spectral operators
# ---------------------------------------------------------------------------------------------


def dealias_cutoff(n: int) -> int:
    """Largest kept wavenumber ``K`` of the 2/3 rule on an ``n``-point grid (``3K < n``)."""
    return (n - 1) // 3


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex64 if dtype == torch.float32 else torch.complex128


def _integer_wavenumbers(n: int, device: torch.device | None) -> tuple[Tensor, Tensor]:
    """Integer wavenumbers ``kx`` of shape (n, 1) and ``ky`` of shape (1, n//2 + 1)."""
    kx = torch.fft.fftfreq(n, d=1.0 / n, device=device, dtype=torch.float64).reshape(n, 1)
    ky = torch.fft.rfftfreq(n, d=1.0 / n, device=device, dtype=torch.float64).reshape(1, -1)
    return kx, ky


class _Operators:
    """Wavenumber-dependent multipliers for an ``n``-point grid, built once per solve.

    Everything is built in float64 and then cast, so float32 runs get correctly rounded
    multipliers.
    """

    def __init__(self, n: int, device: torch.device, dtype: torch.dtype) -> None:
        cdtype = _complex_dtype(dtype)
        kx, ky = _integer_wavenumbers(n, device)
        cut = dealias_cutoff(n)
        mask = (kx.abs() <= cut) & (ky.abs() <= cut)
        two_pi = 2.0 * math.pi
        # Eigenvalues of −Δ; the mean mode carries no stream function.
        lap = (two_pi**2) * (kx**2 + ky**2)
        inv_lap = torch.where(lap > 0, 1.0 / torch.where(lap > 0, lap, 1.0), 0.0)
        dx = 1j * two_pi * kx * mask
        dy = 1j * two_pi * ky * mask
        self.n = n
        self.cut = cut
        self.dtype = dtype
        self.cdtype = cdtype
        # float64 (n, n//2+1), so exp(−ν|k|²h) is formed before rounding to a float32 run.
        self.lap = lap
        self.inv_lap = inv_lap
        self.mask = mask
        # u = ∂ψ/∂y, v = −∂ψ/∂x, then ∂w/∂x, ∂w/∂y: one stacked multiplier lets a single
        # batched inverse FFT produce all four fields per right-hand-side evaluation.
        self.m4 = torch.stack([dy * inv_lap, -dx * inv_lap, dx, dy]).to(cdtype)  # (4, n, n//2+1)
        self.m2 = self.m4[:2]
        # −mask as a real array broadcast over the (re, im) pair of view_as_real, so the
        # dealiasing and sign flip of the advection term is one in-place real multiplication.
        self.neg_mask_r = (-mask.to(dtype)).unsqueeze(-1)  # (n, n//2+1, 1)


def _rfft(w: Tensor) -> Tensor:
    return torch.fft.rfft2(w, norm="forward")


def _irfft(w_hat: Tensor, n: int) -> Tensor:
    return torch.fft.irfft2(w_hat, s=(n, n), norm="forward")


def _check_field(w: Tensor, name: str, *, min_rank: int = 2) -> None:
    if not isinstance(w, Tensor):
        raise SdkdError(f"{name} must be a torch.Tensor; got {type(w).__name__}")
    if w.ndim < min_rank:
        raise SdkdError(f"{name} must have shape (..., N, N); got shape {tuple(w.shape)}")
    if w.shape[-1] != w.shape[-2]:
        raise SdkdError(f"{name} must be on a square grid (..., N, N); got shape {tuple(w.shape)}")
    if w.dtype not in _FLOAT_DTYPES:
        raise SdkdError(f"{name} must be float32 or float64; got {w.dtype}")
    if w.shape[-1] < 4:
        raise SdkdError(f"{name} needs at least 4 grid points per side; got {w.shape[-1]}")


def velocity(w: Tensor) -> Tensor:
    """Velocity ``(u, v) = (∂ψ/∂y, −∂ψ/∂x)`` with ``−Δψ = w`` of a vorticity field.

    Args:
        w: vorticity, shape (..., N, N), float32 or float64, ``w[..., i, j]`` at
            ``(x, y) = (i/N, j/N)``. Its mean is ignored (it carries no velocity).

    Returns:
        Tensor of shape (..., 2, N, N): ``[..., 0, :, :]`` is u (x-component), ``[..., 1, :, :]``
        is v, in domain lengths per time unit. The 2/3-rule dealiasing mask is applied.
    """
    _check_field(w, "w")
    ops = _Operators(w.shape[-1], w.device, w.dtype)
    return _irfft(_rfft(w).unsqueeze(-3) * ops.m2, ops.n)


def advection(w: Tensor) -> Tensor:
    """Advection term ``u·∇w`` of the vorticity equation, dealiased by the 2/3 rule.

    This is (minus) the nonlinear term the solver integrates: the input is projected onto the
    kept modes, the product is formed on the grid, and modes above the cutoff are discarded.

    Args:
        w: vorticity, shape (..., N, N), float32 or float64.

    Returns:
        ``u·∇w`` on the same grid, shape (..., N, N), same dtype (vorticity per time unit).
    """
    _check_field(w, "w")
    ops = _Operators(w.shape[-1], w.device, w.dtype)
    fields = _irfft(_rfft(w).unsqueeze(-3) * ops.m4, ops.n)
    u, v, w_x, w_y = fields.unbind(-3)
    product = u * w_x + v * w_y
    return _irfft(_rfft(product) * ops.mask, ops.n)


def energy(w: Tensor) -> Tensor:
    """Kinetic energy ``½∫|u|² dx`` on the unit torus: shape (...,) for ``w`` of shape (..., N, N).

    Computed spectrally (Parseval) from the 2/3-dealiased vorticity: ``½ Σ_k |ŵ_k|² / (4π²|k|²)``.
    """
    _check_field(w, "w")
    ops = _Operators(w.shape[-1], w.device, torch.float64)
    w_hat = _rfft(w.to(torch.float64)) * ops.mask
    return 0.5 * _half_spectrum_sum(w_hat.abs() ** 2 * ops.inv_lap, ops.n)


def enstrophy(w: Tensor) -> Tensor:
    """Enstrophy ``½∫w² dx`` of the 2/3-dealiased field, shape (...,) for ``w`` (..., N, N)."""
    _check_field(w, "w")
    ops = _Operators(w.shape[-1], w.device, torch.float64)
    w_hat = _rfft(w.to(torch.float64)) * ops.mask
    return 0.5 * _half_spectrum_sum(w_hat.abs() ** 2, ops.n)


def _half_spectrum_sum(density: Tensor, n: int) -> Tensor:
    """Sum a Hermitian-symmetric spectral density over all modes given its rfft half."""
    # Columns other than ky = 0 (and ky = n/2 for even n) stand for two conjugate modes.
    weight = torch.full((density.shape[-1],), 2.0, dtype=density.dtype, device=density.device)
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    return (density * weight).sum(dim=(-2, -1))


# ---------------------------------------------------------------------------------------------
# Forcing, initial conditions, resampling
# ---------------------------------------------------------------------------------------------


def fno_forcing(
    n: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """FNO forcing ``0.1 (sin 2π(x+y) + cos 2π(x+y))`` on an ``n × n`` grid, shape (n, n)."""
    x = torch.arange(n, device=device, dtype=torch.float64) / n
    s = x.reshape(n, 1) + x.reshape(1, n)
    return (0.1 * (torch.sin(2 * math.pi * s) + torch.cos(2 * math.pi * s))).to(dtype)


def gaussian_random_field(
    batch: int,
    n: int,
    *,
    alpha: float = 2.5,
    tau: float = 7.0,
    sigma: float | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Samples of FNO's initial-condition law ``N(0, σ²(−Δ + τ²I)^{−α})`` on the unit torus.

    The Laplacian's eigenvalues are ``4π²|k|²`` and ``σ = τ^{α−1}`` by default, as in FNO's
    ``GaussianRF`` code (``7^{1.5}`` for α = 2.5, τ = 7, so the covariance prefactor is
    ``σ² = 7³``; the FNO paper writes ``7^{3/2}`` for it, but the data were made with the code).
    The mean mode is zero. Each Fourier coefficient (``norm="forward"``) has
    ``E|ŵ_k|² = σ² (4π²|k|² + τ²)^{−α}``; modes up to the grid's Nyquist frequency are
    included, as in FNO, so the law depends on N only through that truncation.

    The sample is the real part of the inverse FFT of complex white noise scaled by
    ``σ (4π²|k|² + τ²)^{−α/2}``: taking the real part projects the noise onto Hermitian
    spectra and halves each mode's variance, which drawing real and imaginary parts with unit
    variance each (``E|c|² = 2``) compensates.

    Args:
        batch: number of independent samples B.
        n: grid points per side N.
        alpha, tau, sigma: covariance parameters (``sigma=None`` means ``tau**(alpha - 1)``).
        generator: the noise is drawn from this generator (on its device) and then moved to
            ``device``; the same seed gives identical samples.
        device: device of the result (default: the generator's device, else the default).
        dtype: float32 or float64; the noise is drawn in this dtype.

    Returns:
        Tensor of shape (B, N, N), ``w[b, i, j]`` at ``(x, y) = (i/N, j/N)``.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise SdkdError(f"batch must be a positive integer; got {batch!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise SdkdError(f"n must be an integer >= 2; got {n!r}")
    if dtype not in _FLOAT_DTYPES:
        raise SdkdError(f"dtype must be torch.float32 or torch.float64; got {dtype}")
    if not (tau > 0 and alpha > 0):
        raise SdkdError(f"tau and alpha must be positive; got tau={tau!r}, alpha={alpha!r}")
    if sigma is None:
        sigma = tau ** (alpha - 1.0)
    noise_device = generator.device if generator is not None else device
    out_device = torch.device(device) if device is not None else noise_device

    kx = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64).reshape(n, 1)
    ky = kx.reshape(1, n)
    scale = sigma * (4 * math.pi**2 * (kx**2 + ky**2) + tau**2) ** (-alpha / 2)
    scale[0, 0] = 0.0
    scale = scale.to(device=noise_device, dtype=dtype)

    noise = torch.randn(2, batch, n, n, generator=generator, device=noise_device, dtype=dtype)
    coeff = torch.complex(noise[0], noise[1]) * scale
    w = torch.fft.ifft2(coeff, norm="forward").real.contiguous()
    return w.to(out_device) if out_device is not None else w


def downsample(w: Tensor, n: int, *, method: str = "spectral") -> Tensor:
    """Resample fields from an N-point to an n-point grid (n ≤ N).

    Args:
        w: fields of shape (..., N, N), float32 or float64.
        n: target grid points per side.
        method: ``"spectral"`` keeps the Fourier modes with ``|kx|, |ky| ≤ (n−1)//2`` and drops
            the rest (the band-limited interpolant of the kept modes; the target grid's Nyquist
            mode is dropped because it cannot be represented symmetrically), or ``"stride"``
            takes every (N/n)-th point, like FNO's ``w[:, ::s, ::s]`` (aliases high modes;
            needs n to divide N).

    Returns:
        Tensor of shape (..., n, n), same dtype and device.
    """
    _check_field(w, "w")
    big = w.shape[-1]
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= big:
        raise SdkdError(f"downsample target n must be an integer in [1, {big}]; got {n!r}")
    if n == big:
        return w
    if method == "stride":
        if big % n:
            raise SdkdError(f"stride downsampling needs n to divide the grid size {big}; got n={n}")
        s = big // n
        return w[..., ::s, ::s].contiguous()
    if method != "spectral":
        raise SdkdError(f"downsample method must be 'spectral' or 'stride'; got {method!r}")
    return _irfft(_truncate_spectrum(_rfft(w), big, n), n)


def _truncate_spectrum(w_hat: Tensor, big: int, n: int) -> Tensor:
    """Copy the modes ``|kx|, |ky| ≤ (n−1)//2`` of an rfft2 spectrum on ``big`` to one on ``n``."""
    m = (n - 1) // 2
    out = w_hat.new_zeros((*w_hat.shape[:-2], n, n // 2 + 1))
    out[..., : m + 1, : m + 1] = w_hat[..., : m + 1, : m + 1]
    if m > 0:
        out[..., n - m :, : m + 1] = w_hat[..., big - m :, : m + 1]
    return out


def record_times(t_end: float, n_records: int) -> Tensor:
    """Times of the records returned by :func:`simulate`: ``t_end·k/n_records``, k = 1..n_records.

    Returns a float64 tensor of shape (n_records,).
    """
    return torch.arange(1, n_records + 1, dtype=torch.float64) * (t_end / n_records)


# ---------------------------------------------------------------------------------------------
# Time stepping
# ---------------------------------------------------------------------------------------------


class _LawsonRK4:
    """Integrating-factor RK4 with all work buffers allocated once for a (B, N) problem.

    The state is the rfft2 spectrum restricted to its first ``C = K + 1`` columns (ky ≤ K, the
    2/3-rule cutoff), shape (B, N, C): the other columns are zero throughout, so storing them
    only costs memory traffic. For the same reason the 2-D transforms are split into 1-D ones
    that skip the zero columns: the inverse runs the x-transform on C columns only, the forward
    x-transform produces only the C columns that are kept. This saves about a quarter of the
    transform work at N = 64 and gives bit-identical results to full 2-D transforms.
    """

    def __init__(
        self, ops: _Operators, batch: int, viscosity: float, forcing_hat: Tensor | None
    ) -> None:
        n, nr, c = ops.n, ops.n // 2 + 1, ops.cut + 1
        dev = ops.m4.device
        self.ops = ops
        self.n, self.cols = n, c
        self.viscosity = viscosity
        self.lap = ops.lap[:, :c].contiguous()
        self.m4 = ops.m4[..., :c].contiguous()  # (4, n, c)
        self.m2 = self.m4[:2]
        self.neg_mask_r = ops.neg_mask_r[:, :c].contiguous()  # (n, c, 1)
        self.forcing_hat_r = (
            None
            if forcing_hat is None
            else torch.view_as_real(forcing_hat[:, :c].contiguous()).contiguous()
        )
        cdt, rdt = ops.cdtype, ops.dtype
        self.hat4 = torch.empty((batch, 4, n, c), dtype=cdt, device=dev)
        # Columns c.. of the inverse transform's input stay zero for the whole solve.
        self.cols4 = torch.zeros((batch, 4, n, nr), dtype=cdt, device=dev)
        self.phys4 = torch.empty((batch, 4, n, n), dtype=rdt, device=dev)
        self.prod = torch.empty((batch, n, n), dtype=rdt, device=dev)
        self.rows = torch.empty((batch, n, nr), dtype=cdt, device=dev)
        self.k = torch.empty((batch, n, c), dtype=cdt, device=dev)
        self.stage = torch.empty_like(self.k)
        self.ew2 = torch.empty_like(self.k)
        self.k_r = torch.view_as_real(self.k)
        self.stage_r = torch.view_as_real(self.stage)
        self.ew2_r = torch.view_as_real(self.ew2)
        self.half_factor_r: Tensor | None = None
        self.h: float | None = None

    def to_state(self, w_hat: Tensor) -> Tensor:
        """Kept columns (B, n, C) of a masked rfft2 spectrum (B, n, n//2+1)."""
        return w_hat[..., : self.cols].contiguous()

    def to_spectrum(self, state: Tensor) -> Tensor:
        """Full rfft2 spectrum (B, n, n//2+1) of a state (B, n, C)."""
        full = state.new_zeros((*state.shape[:-1], self.n // 2 + 1))
        full[..., : self.cols] = state
        return full

    def set_step(self, h: float) -> None:
        if h == self.h:
            return
        # exp(−ν|k|²h/2) as a real (n, C, 1) array: the full-step factor is its square, which
        # the update below applies as two half-step multiplications.
        half = torch.exp(-self.viscosity * self.lap * (h / 2))
        self.half_factor_r = half.to(self.ops.dtype).unsqueeze(-1)
        self.h = h

    def rhs(self, state: Tensor) -> None:
        """``self.k ← −P(u·∇w)^ + f̂`` for the spectral state (B, n, C)."""
        n, c = self.n, self.cols
        torch.mul(state.unsqueeze(1), self.m4, out=self.hat4)
        torch.fft.ifft(self.hat4, dim=-2, norm="forward", out=self.hat4)
        self.cols4[..., :c] = self.hat4
        torch.fft.irfft(self.cols4, n=n, dim=-1, norm="forward", out=self.phys4)
        p = self.phys4
        torch.mul(p[:, 0], p[:, 2], out=self.prod)
        self.prod.addcmul_(p[:, 1], p[:, 3])
        torch.fft.rfft(self.prod, dim=-1, norm="forward", out=self.rows)
        torch.fft.fft(self.rows[..., :c], dim=-2, norm="forward", out=self.k)
        self.k_r.mul_(self.neg_mask_r)
        if self.forcing_hat_r is not None:
            self.k_r.add_(self.forcing_hat_r)

    def step(self, state: Tensor) -> None:
        """Advance ``state`` (B, n, C) in place by one step of size ``self.h``.

        With E = exp(Lh), E2 = exp(Lh/2) the Lawson RK4 update
        ``E w + h/6 (E k1 + 2 E2 (k2 + k3) + k4)`` is evaluated as
        ``E2 (E2 (w + h/6 k1) + h/3 (k2 + k3)) + h/6 k4``, which needs only the state
        (reused as accumulator), one stage, one slope, and ``E2 w``.
        """
        h = self.h
        e2 = self.half_factor_r
        w_r = torch.view_as_real(state)
        k_r, stage, stage_r, ew2_r = self.k_r, self.stage, self.stage_r, self.ew2_r

        self.rhs(state)  # k1
        torch.mul(w_r, e2, out=ew2_r)
        torch.add(w_r, k_r, alpha=h / 2, out=stage_r)
        stage_r.mul_(e2)
        w_r.add_(k_r, alpha=h / 6).mul_(e2)  # accumulator: E2 (w + h/6 k1)

        self.rhs(stage)  # k2
        w_r.add_(k_r, alpha=h / 3)
        torch.add(ew2_r, k_r, alpha=h / 2, out=stage_r)

        self.rhs(stage)  # k3
        w_r.add_(k_r, alpha=h / 3).mul_(e2)
        torch.add(ew2_r, k_r, alpha=h, out=stage_r)
        stage_r.mul_(e2)

        self.rhs(stage)  # k4
        w_r.add_(k_r, alpha=h / 6)

    def max_speed(self, state: Tensor) -> float:
        """Largest ``|u| + |v|`` over the batch and grid (domain lengths per time unit)."""
        uv_hat = self.to_spectrum(state.unsqueeze(1) * self.m2)
        uv = torch.fft.irfft2(uv_hat, s=(self.n, self.n), norm="forward")
        return float(uv.abs().sum(dim=1).amax())


def _positive_finite(value: object, name: str, *, allow_zero: bool = False) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SdkdError(f"{name} must be a real number; got {value!r}") from None
    ok = math.isfinite(x) and (x >= 0 if allow_zero else x > 0)
    if not ok:
        expected = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise SdkdError(f"{name} must be {expected}; got {value!r}")
    return x


def _forcing_spectrum(
    forcing: str | Tensor | None, n: int, ops: _Operators, device: torch.device
) -> Tensor | None:
    if forcing is None:
        return None
    if isinstance(forcing, str):
        if forcing != "fno":
            raise SdkdError(f"forcing must be 'fno', None or an (N, N) tensor; got {forcing!r}")
        f = fno_forcing(n, device=device, dtype=torch.float64)
    elif isinstance(forcing, Tensor):
        if tuple(forcing.shape) != (n, n):
            raise SdkdError(
                f"forcing tensor must have shape ({n}, {n}) like the solver grid; "
                f"got {tuple(forcing.shape)}"
            )
        if not forcing.is_floating_point() or not bool(torch.isfinite(forcing).all()):
            raise SdkdError("forcing tensor must be real-valued and finite")
        f = forcing.to(device=device, dtype=torch.float64)
    else:
        raise SdkdError(
            f"forcing must be 'fno', None or an (N, N) tensor; got {type(forcing).__name__}"
        )
    return (_rfft(f) * ops.mask).to(ops.cdtype)


@torch.no_grad()
def simulate(
    w0: Tensor,
    *,
    viscosity: float,
    t_end: float,
    n_records: int,
    forcing: str | Tensor | None = "fno",
    dt: float | None = None,
    cfl: float = DEFAULT_CFL,
    out_resolution: int | None = None,
    downsample_method: str = "spectral",
    step_log: list[int] | None = None,
    max_retries: int = 8,
    max_steps: int = 1_000_000,
) -> Tensor:
    """Integrate a batch of vorticity fields and return equally spaced records.

    Args:
        w0: initial vorticity, shape (B, N, N), float32 or float64, ``w0[b, i, j]`` at
            ``(x, y) = (i/N, j/N)`` on the unit torus. The solve runs on ``w0.device`` in
            ``w0.dtype``; it is first projected onto the 2/3-rule modes.
        viscosity: ν ≥ 0, in (domain length)² per time unit.
        t_end: final time > 0, in the time unit of the problem.
        n_records: number of records ≥ 1; records are at ``t_end·k/n_records``, k = 1..n_records
            (the initial state is not included; see :func:`record_times`).
        forcing: ``"fno"`` for ``0.1 (sin 2π(x+y) + cos 2π(x+y))``, ``None`` for no forcing, or a
            time-independent (N, N) tensor on the solver grid.
        dt: optional upper bound on the time step. Whether given or not, each record interval
            is split into an integer number of equal steps, so steps land exactly on the
            record times.
        cfl: CFL number ``h·max(|u| + |v|)·N`` used to pick the step from the velocity at the
            start of each record interval (worst-case stability limit ≈ 1.35). An interval whose
            final velocity gives more than ``max(1.5, 1.25·cfl)`` with the step used is
            recomputed with a smaller step.
        out_resolution: grid size n ≤ N of the returned records (default N). Records are
            downsampled from the solver grid by ``downsample_method``.
        downsample_method: ``"spectral"`` (truncate Fourier modes to ``|k| ≤ (n−1)//2``) or
            ``"stride"`` (FNO-style ``w[..., ::N/n, ::N/n]``); see :func:`downsample`.
        step_log: if a list is given, the number of steps used for each record interval is
            appended to it.
        max_retries: how often a record interval may be recomputed with a smaller step (after
            non-finite values or a CFL violation) before the solve is declared unstable.
        max_steps: largest number of steps allowed for one record interval; a flow needing more
            (absurdly fast for its grid) is rejected rather than integrated for hours.

    Returns:
        Tensor of shape (B, n_records, n, n) with ``w0``'s dtype and device.

    Raises:
        SdkdError: on malformed input; when the solution stays non-finite or CFL-violating
            after ``max_retries`` smaller steps (the message names viscosity and step); when a
            record interval would need more than ``max_steps`` steps.
    """
    if not isinstance(w0, Tensor):
        raise SdkdError(f"w0 must be a torch.Tensor of shape (B, N, N); got {type(w0).__name__}")
    if w0.ndim != 3:
        raise SdkdError(f"w0 must have shape (B, N, N); got shape {tuple(w0.shape)}")
    _check_field(w0, "w0")
    if w0.shape[0] < 1:
        raise SdkdError("w0 must hold at least one field (B >= 1); got B = 0")
    if not bool(torch.isfinite(w0).all()):
        raise SdkdError("w0 must be finite; it contains NaN or infinite values")
    nu = _positive_finite(viscosity, "viscosity", allow_zero=True)
    t_end = _positive_finite(t_end, "t_end")
    if isinstance(n_records, bool) or not isinstance(n_records, int) or n_records < 1:
        raise SdkdError(f"n_records must be an integer >= 1; got {n_records!r}")
    dt_max = math.inf if dt is None else _positive_finite(dt, "dt")
    cfl = _positive_finite(cfl, "cfl")
    for name, value, least in (("max_retries", max_retries, 0), ("max_steps", max_steps, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise SdkdError(f"{name} must be an integer >= {least}; got {value!r}")
    batch, n = w0.shape[0], w0.shape[-1]
    n_out = n if out_resolution is None else out_resolution
    if isinstance(n_out, bool) or not isinstance(n_out, int) or not 1 <= n_out <= n:
        raise SdkdError(
            f"out_resolution must be an integer in [1, {n}] (the solver grid); "
            f"got {out_resolution!r}"
        )
    if downsample_method not in ("spectral", "stride"):
        raise SdkdError(
            f"downsample_method must be 'spectral' or 'stride'; got {downsample_method!r}"
        )
    if downsample_method == "stride" and n % n_out:
        raise SdkdError(
            f"stride downsampling needs out_resolution to divide the grid size {n}; got {n_out}"
        )

    ops = _Operators(n, w0.device, w0.dtype)
    integrator = _LawsonRK4(ops, batch, nu, _forcing_spectrum(forcing, n, ops, w0.device))
    w_hat = integrator.to_state(_rfft(w0) * ops.mask)
    saved = torch.empty_like(w_hat)
    out = torch.empty((batch, n_records, n_out, n_out), dtype=w0.dtype, device=w0.device)
    interval = t_end / n_records
    # Step counts are chosen so h ≤ bound; the slack stops round-off in interval/dt from adding
    # a step when dt divides the interval.
    slack = 1e-9

    reject_cfl = max(_CFL_REJECT, 1.25 * cfl)
    speed = integrator.max_speed(w_hat)
    if not math.isfinite(speed):
        raise SdkdError(f"w0 is too large for {w0.dtype}: its velocity overflows")
    for r in range(n_records):
        saved.copy_(w_hat)
        for _attempt in range(max_retries + 1):
            h_bound = dt_max if speed == 0 else min(dt_max, cfl / (speed * n))
            n_steps = max(1, math.ceil(interval / h_bound - slack))
            if n_steps > max_steps:
                raise SdkdError(
                    f"record interval {r + 1}/{n_records} would need {n_steps} steps "
                    f"(max_steps={max_steps}) for max(|u|+|v|)={speed:.3g} at cfl={cfl:g}; "
                    f"the flow is too fast for this grid (viscosity={nu:g}, dt bound={dt})"
                )
            integrator.set_step(interval / n_steps)
            for _ in range(n_steps):
                integrator.step(w_hat)
            end_speed = integrator.max_speed(w_hat)
            if math.isfinite(end_speed) and end_speed * integrator.h * n <= reject_cfl:
                break
            # Retry from the saved state. A state that went unstable has a meaningless (possibly
            # huge) speed, so the speed estimate grows by at most 4x per retry.
            floor = 1.0 / (n * interval)  # makes a zero speed give a finite step
            grown = end_speed if math.isfinite(end_speed) else math.inf
            speed = min(max(grown, 2.0 * speed, floor), 4.0 * max(speed, floor))
            w_hat.copy_(saved)
        else:
            raise SdkdError(
                f"Navier–Stokes solve became unstable (non-finite values or CFL number above "
                f"{reject_cfl:g}) in record interval {r + 1}/{n_records} with "
                f"viscosity={nu:g}, dt={integrator.h:.3g} (cfl={cfl:g}, dt bound={dt})"
            )
        if not bool(torch.isfinite(w_hat).all()):
            raise SdkdError(
                f"Navier–Stokes solve produced non-finite values in record interval "
                f"{r + 1}/{n_records} with viscosity={nu}, dt={integrator.h:.3g}"
            )
        if step_log is not None:
            step_log.append(n_steps)
        speed = end_speed
        spectrum = integrator.to_spectrum(w_hat)
        if n_out == n:
            out[:, r] = _irfft(spectrum, n)
        elif downsample_method == "spectral":
            out[:, r] = _irfft(_truncate_spectrum(spectrum, n, n_out), n_out)
        else:
            s = n // n_out
            out[:, r] = _irfft(spectrum, n)[..., ::s, ::s]
    return out
