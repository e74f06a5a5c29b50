"""Tests of the pseudo-spectral Navier–Stokes solver in sdkd.data.navier_stokes.

Grids are 32 or 64 points and horizons short so the whole file runs in well under a minute on
two cores. Exact-solution checks run in float64 so that tolerances can be near round-off.
"""

from __future__ import annotations

import math

import pytest
import torch

from sdkd.data.navier_stokes import (
    DEFAULT_CFL,
    advection,
    dealias_cutoff,
    downsample,
    energy,
    enstrophy,
    fno_forcing,
    gaussian_random_field,
    record_times,
    simulate,
    velocity,
)
from sdkd.errors import SdkdError

TWO_PI = 2.0 * math.pi
F64 = torch.float64


def grid(n: int, dtype: torch.dtype = F64) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates X, Y of shape (n, n) with X varying along axis 0 (x = i/n), Y along axis 1."""
    x = torch.arange(n, dtype=dtype) / n
    return torch.meshgrid(x, x, indexing="ij")


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.to(F64), b.to(F64)
    return float((a - b).norm() / b.norm())


def grf(batch: int, n: int, seed: int, dtype: torch.dtype = F64, **kw: float) -> torch.Tensor:
    return gaussian_random_field(
        batch, n, generator=torch.Generator().manual_seed(seed), dtype=dtype, **kw
    )


# ---------------------------------------------------------------------------------------------
# 1. Exact solutions
# ---------------------------------------------------------------------------------------------


def _taylor_green(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.sin(TWO_PI * x) * torch.sin(TWO_PI * y)  # shell |k|² = 2


def _shell_25(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Modes (3, 4), (5, 0) and (4, −3) all lie on the shell |k|² = 25.
    return (
        torch.cos(TWO_PI * (3 * x + 4 * y))
        + 0.5 * torch.sin(TWO_PI * 5 * x)
        - 2.0 * torch.cos(TWO_PI * (4 * x - 3 * y))
    )


@pytest.mark.parametrize(("field", "k2"), [(_taylor_green, 2), (_shell_25, 25)])
def test_single_shell_decays_exactly(field, k2: int) -> None:
    n, nu, t_end, n_records = 32, 0.01, 0.5, 5
    w0 = field(*grid(n))
    # Single-shell fields are steady Euler flows: the advection term vanishes identically.
    assert float(advection(w0).abs().max()) < 1e-12

    out = simulate(w0[None], viscosity=nu, t_end=t_end, n_records=n_records, forcing=None)
    times = record_times(t_end, n_records)
    exact = w0[None, None] * torch.exp(-nu * 4 * math.pi**2 * k2 * times)[None, :, None, None]
    assert out.shape == (1, n_records, n, n)
    assert float((out - exact).abs().max()) < 1e-12


def test_fno_forcing_steady_state() -> None:
    n, nu = 32, 1e-3
    f = fno_forcing(n, dtype=F64)
    x, y = grid(n)
    assert torch.allclose(
        f, 0.1 * (torch.sin(TWO_PI * (x + y)) + torch.cos(TWO_PI * (x + y))), atol=1e-15
    )
    # f lies on the |k|² = 2 shell, so νΔw + f = 0 for w = f / (8π²ν) and advection vanishes.
    w_star = (f / (8 * math.pi**2 * nu))[None]
    out = simulate(w_star, viscosity=nu, t_end=5.0, n_records=5, forcing="fno")
    assert rel_l2(out, w_star.expand_as(out)) < 1e-10
    # The same forcing passed as a tensor gives the same answer.
    out_t = simulate(w_star, viscosity=nu, t_end=5.0, n_records=5, forcing=f)
    assert torch.equal(out, out_t)


def test_advection_and_velocity_match_hand_computation() -> None:
    n = 32
    x, y = grid(n)
    # w = sin 2πx + cos 4πy  ⇒  ψ = sin(2πx)/(4π²) + cos(4πy)/(16π²),
    # u = ∂ψ/∂y = −sin(4πy)/(4π),  v = −∂ψ/∂x = −cos(2πx)/(2π),
    # u·∇w = u·2π cos 2πx + v·(−4π sin 4πy) = (−1/2 + 2) cos 2πx sin 4πy.
    w = torch.sin(TWO_PI * x) + torch.cos(2 * TWO_PI * y)
    uv = velocity(w)
    assert uv.shape == (2, n, n)
    assert torch.allclose(uv[0], -torch.sin(2 * TWO_PI * y) / (4 * math.pi), atol=1e-14)
    assert torch.allclose(uv[1], -torch.cos(TWO_PI * x) / (2 * math.pi), atol=1e-14)
    expected = 1.5 * torch.cos(TWO_PI * x) * torch.sin(2 * TWO_PI * y)
    assert float((advection(w) - expected).abs().max()) < 1e-13
    # Batched float32 evaluation agrees to single precision.
    batch = torch.stack([w, 2 * w]).float()
    adv32 = advection(batch)
    assert adv32.dtype == torch.float32
    assert torch.allclose(adv32[1].double(), 4 * expected, atol=1e-5)


def test_short_step_follows_the_equation() -> None:
    # Over a short time t, (w(t) − w0)/t = −u·∇w0 + νΔw0 + f + O(t): checks the sign with which
    # the solver applies each term (the conservation and convergence tests cannot see it).
    n, nu, t = 32, 0.01, 1e-4
    x, y = grid(n)
    w0 = torch.sin(TWO_PI * x) + torch.cos(2 * TWO_PI * y)
    lap_w0 = -4 * math.pi**2 * (torch.sin(TWO_PI * x) + 4 * torch.cos(2 * TWO_PI * y))
    rate = -advection(w0) + nu * lap_w0 + fno_forcing(n, dtype=F64)
    out = simulate(w0[None], viscosity=nu, t_end=t, n_records=1, forcing="fno")
    assert rel_l2((out[0, 0] - w0) / t, rate) < 1e-3


# ---------------------------------------------------------------------------------------------
# 2. Conservation laws
# ---------------------------------------------------------------------------------------------


def test_inviscid_unforced_conserves_energy_enstrophy_and_mean() -> None:
    n = 32
    w0 = grf(2, n, seed=5, alpha=3.5) * 20 + 0.3  # nonzero mean must be carried unchanged
    out = simulate(w0, viscosity=0.0, t_end=4.0, n_records=4, forcing=None, cfl=0.25)
    assert rel_l2(out[:, -1], w0) > 0.05  # the flow did evolve
    for quantity in (energy, enstrophy):
        q0 = quantity(w0)[:, None]
        assert float(((quantity(out) - q0) / q0).abs().max()) < 1e-6
    means = out.mean(dim=(-2, -1))
    assert torch.allclose(means, torch.full_like(means, 0.3), atol=1e-12)


def test_viscous_unforced_energy_decays_monotonically() -> None:
    w0 = grf(2, 32, seed=6) * 10
    out = simulate(w0, viscosity=1e-2, t_end=2.0, n_records=8, forcing=None)
    e = torch.cat([energy(w0)[:, None], energy(out)], dim=1)
    assert bool((e[:, 1:] < e[:, :-1]).all())


# ---------------------------------------------------------------------------------------------
# 3. Time convergence of the default step selection
# ---------------------------------------------------------------------------------------------


def test_default_step_is_converged_in_time() -> None:
    w0 = grf(2, 64, seed=4, dtype=torch.float32)
    steps: list[int] = []
    auto = simulate(w0, viscosity=1e-3, t_end=10.0, n_records=10, step_log=steps)
    assert len(steps) == 10
    half_step = 0.5 * min(1.0 / s for s in steps)  # record interval is 1 time unit
    fine_steps: list[int] = []
    fine = simulate(w0, viscosity=1e-3, t_end=10.0, n_records=10, dt=half_step, step_log=fine_steps)
    assert all(f >= 2 * s for f, s in zip(fine_steps, steps, strict=True))
    assert rel_l2(auto, fine) < 1e-4
    # Halving the CFL number is the other way to halve the automatic step.
    half_cfl = simulate(w0, viscosity=1e-3, t_end=10.0, n_records=10, cfl=DEFAULT_CFL / 2)
    assert rel_l2(auto, half_cfl) < 1e-4


# ---------------------------------------------------------------------------------------------
# 4. Spatial resolution, downsampling and the output contract
# ---------------------------------------------------------------------------------------------


def test_fine_grid_downsampled_matches_coarse_grid() -> None:
    w128 = grf(2, 128, seed=3)
    w64 = downsample(w128, 64)
    fine = simulate(w128, viscosity=1e-3, t_end=3.0, n_records=3, out_resolution=64)
    coarse = simulate(w64, viscosity=1e-3, t_end=3.0, n_records=3)
    assert fine.shape == coarse.shape == (2, 3, 64, 64)
    assert rel_l2(fine, coarse) < 1e-5


def test_downsample_methods() -> None:
    n = 64
    x, y = grid(n)
    # Modes up to 20 survive truncation to a 48-point grid exactly; mode 30 is dropped.
    low = torch.sin(TWO_PI * (3 * x - 20 * y)) + torch.cos(TWO_PI * 7 * x)
    high = torch.cos(TWO_PI * 30 * y)
    small = downsample((low + high)[None], 48)
    xs, ys = grid(48)
    low_small = torch.sin(TWO_PI * (3 * xs - 20 * ys)) + torch.cos(TWO_PI * 7 * xs)
    assert small.shape == (1, 48, 48)
    assert float((small[0] - low_small).abs().max()) < 1e-12
    strided = downsample(low[None], 32, method="stride")
    assert torch.equal(strided, low[None, ::2, ::2])
    with pytest.raises(SdkdError, match="divide"):
        downsample(low, 48, method="stride")


def test_output_contract_and_record_times() -> None:
    n, nu = 32, 0.02
    x, y = grid(n)
    w0 = torch.stack([torch.cos(TWO_PI * (x + y)), torch.sin(TWO_PI * (x - y))])  # |k|² = 2
    t_end, n_records = 0.7, 7
    steps: list[int] = []
    # dt = 0.03 does not divide the interval 0.1: each interval then takes 4 equal steps.
    common = {"viscosity": nu, "t_end": t_end, "n_records": n_records, "forcing": None}
    out = simulate(w0, **common, dt=0.03, out_resolution=16, step_log=steps)
    assert out.shape == (2, n_records, 16, 16)
    assert out.dtype == F64
    assert steps == [4] * n_records
    times = record_times(t_end, n_records)
    assert torch.allclose(times, torch.arange(1, 8, dtype=F64) * 0.1, rtol=0, atol=1e-15)
    decay = torch.exp(-nu * 8 * math.pi**2 * times)
    exact = downsample(w0, 16)[:, None] * decay[None, :, None, None]
    assert float((out - exact).abs().max()) < 1e-12
    strided = simulate(w0, **common, dt=0.03, out_resolution=16, downsample_method="stride")
    assert torch.allclose(strided, (w0[:, None] * decay[None, :, None, None])[..., ::2, ::2])
    # A float32 input is solved and returned in float32.
    assert simulate(w0.float(), viscosity=nu, t_end=0.1, n_records=1).dtype == torch.float32


def test_initial_field_is_projected_onto_dealiased_modes() -> None:
    n = 32
    cut = dealias_cutoff(n)
    assert cut == 10
    x, _ = grid(n)
    w0 = (torch.cos(TWO_PI * 3 * x) + torch.cos(TWO_PI * (cut + 1) * x))[None]
    out = simulate(w0, viscosity=0.0, t_end=0.1, n_records=1, forcing=None)
    assert float((out[0, 0] - torch.cos(TWO_PI * 3 * x)).abs().max()) < 1e-12


# ---------------------------------------------------------------------------------------------
# 5. Gaussian random field initial conditions
# ---------------------------------------------------------------------------------------------


def test_grf_is_deterministic_and_mean_free() -> None:
    a = grf(3, 32, seed=11, dtype=torch.float32)
    b = grf(3, 32, seed=11, dtype=torch.float32)
    c = grf(3, 32, seed=12, dtype=torch.float32)
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert float(a.double().mean(dim=(-2, -1)).abs().max()) < 1e-6


def test_grf_spectrum_matches_covariance() -> None:
    n, batch, alpha, tau = 32, 512, 2.5, 7.0
    w = grf(batch, n, seed=0, alpha=alpha, tau=tau)
    power = (torch.fft.fft2(w, norm="forward").abs() ** 2).mean(dim=0)
    k = torch.fft.fftfreq(n, d=1.0 / n, dtype=F64)
    lam = 4 * math.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + tau**2
    sigma2 = tau ** (2 * alpha - 2)  # FNO's sigma = tau^(alpha - 1) = 7^1.5
    expected = sigma2 * lam ** (-alpha)
    assert float(power[0, 0]) < 1e-20
    ratio = (power / expected).flatten()[1:]
    # Each mode averages 512 exponential variables (5% standard error); the mean over all
    # modes is much tighter. Both bounds are many standard errors wide.
    assert float(ratio.min()) > 0.7 and float(ratio.max()) < 1.4
    assert abs(float(ratio.mean()) - 1.0) < 0.01
    # Power-law slope of the spectrum in (4π²|k|² + τ²) is −α.
    mask = torch.ones_like(power, dtype=torch.bool)
    mask[0, 0] = False
    slope = torch.linalg.lstsq(
        torch.stack([lam[mask].log(), torch.ones(int(mask.sum()), dtype=F64)], dim=1),
        power[mask].log()[:, None],
    ).solution[0, 0]
    assert abs(float(slope) + alpha) < 0.05


# ---------------------------------------------------------------------------------------------
# 6. Bad input
# ---------------------------------------------------------------------------------------------

_W = torch.zeros(2, 16, 16)


@pytest.mark.parametrize(
    ("w0", "kwargs", "match"),
    [
        (torch.zeros(16, 16), {}, r"w0 must have shape \(B, N, N\)"),
        (torch.zeros(1, 2, 16, 16), {}, r"w0 must have shape \(B, N, N\)"),
        (torch.zeros(2, 16, 8), {}, "w0 must be on a square grid"),
        (torch.zeros(2, 16, 16, dtype=torch.int64), {}, "w0 must be float32 or float64"),
        (_W.clone().index_fill_(1, torch.tensor([3]), math.nan), {}, "w0 must be finite"),
        (_W, {"t_end": 0.0}, "t_end must be a finite number > 0"),
        (_W, {"t_end": -1.0}, "t_end must be a finite number > 0"),
        (_W, {"t_end": math.nan}, "t_end must be a finite number > 0"),
        (_W, {"n_records": 0}, "n_records must be an integer >= 1"),
        (_W, {"n_records": 2.5}, "n_records must be an integer >= 1"),
        (_W, {"viscosity": -1e-3}, "viscosity must be a finite number >= 0"),
        (_W, {"dt": 0.0}, "dt must be a finite number > 0"),
        (_W, {"cfl": -1.0}, "cfl must be a finite number > 0"),
        (_W, {"forcing": "kolmogorov"}, "forcing must be 'fno', None or an"),
        (_W, {"forcing": torch.zeros(8, 8)}, r"forcing tensor must have shape \(16, 16\)"),
        (_W, {"out_resolution": 32}, r"out_resolution must be an integer in \[1, 16\]"),
    ],
)
def test_bad_input_raises_sdkd_error(w0: torch.Tensor, kwargs: dict, match: str) -> None:
    args = {"viscosity": 1e-3, "t_end": 1.0, "n_records": 2} | kwargs
    with pytest.raises(SdkdError, match=match):
        simulate(w0, **args)


def test_blow_up_raises_sdkd_error_naming_viscosity_and_dt() -> None:
    w0 = grf(1, 32, seed=7) * 10
    # A CFL number of 20 is far beyond RK4's stability limit; without retries the solve must
    # fail loudly instead of returning garbage.
    with pytest.raises(SdkdError, match=r"unstable.*viscosity=0.*dt="):
        simulate(w0, viscosity=0.0, t_end=20.0, n_records=20, forcing=None, cfl=20.0, max_retries=0)
    # With the default retries the same request recovers by shrinking the step.
    out = simulate(w0, viscosity=0.0, t_end=2.0, n_records=2, forcing=None, cfl=20.0)
    assert bool(torch.isfinite(out).all())
    with pytest.raises(SdkdError, match=r"max_steps.*viscosity="):
        simulate(w0 * 1e9, viscosity=1e-3, t_end=1.0, n_records=1)


def test_gaussian_random_field_rejects_bad_arguments() -> None:
    with pytest.raises(SdkdError, match="batch"):
        gaussian_random_field(0, 16)
    with pytest.raises(SdkdError, match="dtype"):
        gaussian_random_field(1, 16, dtype=torch.int32)


# ---------------------------------------------------------------------------------------------
# 7. CUDA agrees with CPU
# ---------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(("dtype", "tol"), [(F64, 1e-9), (torch.float32, 1e-4)])
def test_cuda_matches_cpu(dtype: torch.dtype, tol: float) -> None:
    w0 = grf(4, 64, seed=9, dtype=dtype)
    kwargs = {"viscosity": 1e-3, "t_end": 2.0, "n_records": 2, "dt": 0.02}
    cpu = simulate(w0, **kwargs)
    gpu = simulate(w0.cuda(), **kwargs)
    assert gpu.device.type == "cuda" and gpu.dtype == dtype
    assert rel_l2(gpu.cpu(), cpu) < tol
    # The GRF drawn on the CPU and moved is the same field.
    on_gpu = gaussian_random_field(
        2, 32, generator=torch.Generator().manual_seed(1), device="cuda", dtype=dtype
    )
    assert torch.equal(on_gpu.cpu(), grf(2, 32, seed=1, dtype=dtype))
