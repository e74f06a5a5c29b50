"""Checks of the FitzHugh-Nagumo diffusion-reaction solver against exact and independent results."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from sdkd.data.diffusion_reaction import random_initial_condition, simulate, stable_dt
from sdkd.errors import SdkdError

K = 5e-3


def centres(n: int) -> torch.Tensor:
    return -1.0 + (torch.arange(n, dtype=torch.float64) + 0.5) * (2.0 / n)


def neumann_mode(m: int, q: int, n: int) -> torch.Tensor:
    """cos(mπ(y+1)/2)·cos(qπ(x+1)/2) at the cell centres of an nxn grid on [-1, 1]²."""
    x = centres(n)
    return torch.outer(torch.cos(m * math.pi * (x + 1) / 2), torch.cos(q * math.pi * (x + 1) / 2))


def smooth_state(n: int, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A sum of the lowest 4x4 Neumann modes with random amplitudes, sampled on an nxn grid.

    The amplitudes depend only on the seed, so grids of different n see the same continuum field.
    """
    g = torch.Generator().manual_seed(seed)
    modes = 4
    decay = 1.0 + torch.arange(modes)[:, None] + torch.arange(modes)[None, :]
    amp = torch.randn((batch, 2, modes, modes), generator=g, dtype=torch.float64) / decay
    x = centres(n)
    c = torch.stack([torch.cos(m * math.pi * (x + 1) / 2) for m in range(modes)])
    field = torch.einsum("bcpq,py,qx->bcyx", amp, c, c)
    return field[:, 0].contiguous(), field[:, 1].contiguous()


def coarsen(a: torch.Tensor) -> torch.Tensor:
    """Average 2x2 blocks of cells, i.e. the finite-volume restriction to the coarser grid."""
    *lead, h, w = a.shape
    return a.reshape(*lead, h // 2, 2, w // 2, 2).mean(dim=(-1, -3))


def reaction_ode(_t: float, y: np.ndarray) -> list[float]:
    u, v = y
    return [u - u**3 - K - v, u - v]


# ---------------------------------------------------------------- 1. no-flux boundaries


def test_pure_diffusion_conserves_totals() -> None:
    g = torch.Generator().manual_seed(1)
    u0, v0 = random_initial_condition(2, 24, generator=g, dtype=torch.float64)
    out = simulate(u0, v0, t_end=1.0, n_frames=11, du=0.01, dv=0.05, reaction=False)
    totals = out.sum(dim=(-1, -2))  # (B, frames, 2)
    scale = out[:, 0].abs().sum(dim=(-1, -2))  # what round-off is relative to
    assert torch.all((totals - totals[:, :1]).abs() <= 1e-13 * scale[:, None])
    # Conservation must not come from nothing happening: the noise has been smoothed a lot.
    assert out[:, -1].std() < 0.5 * out[:, 0].std()


def test_reaction_drives_totals() -> None:
    # Half amplitude keeps the cubic transient gentle enough for the quadrature to resolve it.
    u0, v0 = (0.5 * a for a in smooth_state(24))
    t_end, n_frames = 0.4, 81
    out = simulate(u0, v0, t_end=t_end, n_frames=n_frames)
    u, v = out[:, :, 0], out[:, :, 1]
    sources = ((u - u**3 - K - v).sum(dim=(-1, -2)), (u - v).sum(dim=(-1, -2)))
    h = t_end / (n_frames - 1)
    for channel, source in enumerate(sources):
        total = out[:, :, channel].sum(dim=(-1, -2))
        # Simpson over pairs of frame intervals; only the totals' change is compared, so
        # any leak through the walls would show up here as a mismatch.
        panels = h / 3 * (source[:, 0:-1:2] + 4 * source[:, 1::2] + source[:, 2::2])
        integral = torch.cumsum(panels, dim=1)
        change = total[:, 2::2] - total[:, :1]
        assert integral.abs().max() > 1.0  # the reaction really moves the totals
        err = (change - integral).abs().max()
        assert err < 1e-6 * integral.abs().max(), (channel, err)


def test_mirror_symmetry_is_preserved() -> None:
    g = torch.Generator().manual_seed(2)
    u0, v0 = random_initial_condition(2, 20, generator=g, dtype=torch.float64)

    def symmetrise(a: torch.Tensor) -> torch.Tensor:
        a = a + a.flip(-1)
        a = a + a.flip(-2)
        return 0.5 * (a + a.transpose(-1, -2))

    u0, v0 = symmetrise(u0), symmetrise(v0)
    out = simulate(u0, v0, t_end=2.0, n_frames=21)
    for image in (out.flip(-1), out.flip(-2), out.transpose(-1, -2)):
        torch.testing.assert_close(image, out, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- 2. exact diffusion


def test_neumann_eigenmode_decay_converges_second_order() -> None:
    du, dv, t_end = 1e-3, 5e-3, 5.0
    times = torch.linspace(0, t_end, 11, dtype=torch.float64)
    errors = []
    for n in (16, 32, 64):
        mu, mv = (2, 1), (1, 3)
        u0 = neumann_mode(*mu, n)[None]
        v0 = neumann_mode(*mv, n)[None]
        out = simulate(u0, v0, t_end=t_end, n_frames=11, du=du, dv=dv, reaction=False)
        err = 0.0
        for channel, (p, q), d, shape0 in ((0, mu, du, u0), (1, mv, dv, v0)):
            rate = d * ((p * math.pi / 2) ** 2 + (q * math.pi / 2) ** 2)
            exact = torch.exp(-rate * times)[:, None, None] * shape0
            err = max(err, (out[0, :, channel] - exact).abs().max().item())
        errors.append(err)
    ratios = [errors[i] / errors[i + 1] for i in range(2)]
    assert all(3.8 < r < 4.2 for r in ratios), (errors, ratios)
    assert errors[-1] < 1e-3


@pytest.mark.parametrize("dt", [None, 0.07])
def test_neumann_eigenmode_matches_discrete_eigenvalue(dt: float | None) -> None:
    # The sampled cosine is an exact eigenvector of the mirrored-ghost 5-point stencil, with
    # eigenvalue -(4/dx²)·(sin²(pπdx/4) + sin²(qπdx/4)), so the discrete solution is known in
    # closed form: RK4's amplification polynomial raised to the number of equal substeps.
    n, d, (p, q), t_end, n_frames = 24, 5e-3, (3, 2), 5.0, 11
    dx = 2.0 / n
    u0 = neumann_mode(p, q, n)[None]
    out = simulate(u0, u0, t_end=t_end, n_frames=n_frames, du=d, dv=d, reaction=False, dt=dt)
    lam = 4 / dx**2 * (math.sin(p * math.pi * dx / 4) ** 2 + math.sin(q * math.pi * dx / 4) ** 2)
    frame_dt = t_end / (n_frames - 1)
    # A given dt is an upper bound: the frame interval splits into the fewest equal substeps.
    bound = min(stable_dt(u0, u0, du=d, dv=d, reaction=False), dt or math.inf)
    substeps = math.ceil(frame_dt / bound)
    z = -d * lam * frame_dt / substeps
    growth = (1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24) ** substeps
    exact = growth ** torch.arange(n_frames, dtype=torch.float64)[:, None, None] * u0
    for channel in (0, 1):
        torch.testing.assert_close(out[0, :, channel], exact, rtol=0, atol=1e-13)


# ---------------------------------------------------------------- 3. reaction vs ODE


def test_uniform_states_follow_the_reaction_ode() -> None:
    starts = [(0.0, 0.0), (0.3, -1.0), (-2.0, 3.0), (4.5, -4.5), (1.0, 1.0)]
    u0 = torch.tensor([s[0] for s in starts], dtype=torch.float64)[:, None, None].repeat(1, 4, 4)
    v0 = torch.tensor([s[1] for s in starts], dtype=torch.float64)[:, None, None].repeat(1, 4, 4)
    out = simulate(u0, v0)
    # Uniform fields have exactly zero discrete Laplacian, so they must stay exactly uniform.
    assert torch.equal(out, out[..., :1, :1].expand_as(out))
    times = np.linspace(0.0, 5.0, 101)
    for i, y0 in enumerate(starts):
        ref = solve_ivp(
            reaction_ode, (0.0, 5.0), y0, method="DOP853", t_eval=times, rtol=1e-10, atol=1e-12
        )
        assert ref.success
        got = out[i, :, :, 0, 0].numpy()
        np.testing.assert_allclose(got, ref.y.T, rtol=0, atol=1e-6, err_msg=str(y0))


# ---------------------------------------------------------------- 4. converged reference


def test_default_step_is_converged_in_time() -> None:
    u0, v0 = smooth_state(32)
    coarse = simulate(u0, v0)
    fine = simulate(u0, v0, safety=0.25)  # every step 4x shorter (up to whole substeps)
    rel = (coarse - fine).abs().max() / fine.abs().max()
    assert rel < 1e-5


def test_grid_refinement_is_second_order() -> None:
    runs = {n: simulate(*smooth_state(n), n_frames=11) for n in (16, 32, 64)}
    d1 = (coarsen(runs[32]) - runs[16]).abs().max().item()
    d2 = (coarsen(runs[64]) - runs[32]).abs().max().item()
    # Successive differences of a 2nd-order scheme shrink by about 4 per halving of dx.
    assert 3.0 < d1 / d2 < 5.0, (d1, d2)
    assert d2 < 1e-2 * runs[64].abs().max().item()


# ---------------------------------------------------------------- 5. output contract


def test_output_shape_and_first_frame() -> None:
    g = torch.Generator().manual_seed(3)
    u0, v0 = random_initial_condition(3, 16, generator=g)
    out = simulate(u0, v0, t_end=0.5, n_frames=7)
    assert out.shape == (3, 7, 2, 16, 16)
    assert out.dtype == torch.float32 and out.device == u0.device
    assert torch.equal(out[:, 0, 0], u0) and torch.equal(out[:, 0, 1], v0)
    assert torch.isfinite(out).all()
    assert not torch.equal(out[:, -1], out[:, 0])


def test_random_initial_condition_is_seeded() -> None:
    a = random_initial_condition(2, 32, generator=torch.Generator().manual_seed(7))
    b = random_initial_condition(2, 32, generator=torch.Generator().manual_seed(7))
    c = random_initial_condition(2, 32, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0], a[1])
    u, v = random_initial_condition(
        4, 64, generator=torch.Generator().manual_seed(9), dtype=torch.float64
    )
    assert u.shape == v.shape == (4, 64, 64) and u.dtype == torch.float64
    samples = torch.cat([u.flatten(), v.flatten()])
    assert abs(samples.mean().item()) < 0.02 and abs(samples.std().item() - 1.0) < 0.02


# ---------------------------------------------------------------- 6. bad input

_GOOD = torch.zeros(1, 8, 8)


@pytest.mark.parametrize(
    ("args", "kwargs", "name"),
    [
        ((torch.zeros(8, 8), torch.zeros(8, 8)), {}, "u0"),
        ((_GOOD, torch.zeros(1, 8, 6)), {}, "v0"),
        ((_GOOD, torch.zeros(2, 8, 8)), {}, "same shape"),
        ((torch.zeros(1, 8, 8, dtype=torch.int64), _GOOD), {}, "u0"),
        ((_GOOD, _GOOD), {"t_end": 0.0}, "t_end"),
        ((_GOOD, _GOOD), {"t_end": -1.0}, "t_end"),
        ((_GOOD, _GOOD), {"n_frames": 1}, "n_frames"),
        ((_GOOD, _GOOD), {"du": -1e-3}, "du"),
        ((_GOOD, _GOOD), {"dv": -5e-3}, "dv"),
        ((_GOOD, _GOOD), {"dt": 0.0}, "dt"),
        ((_GOOD, _GOOD), {"safety": 1.5}, "safety"),
        ((_GOOD, _GOOD), {"domain": (1.0, -1.0)}, "domain"),
        ((torch.full((1, 8, 8), math.nan), _GOOD), {}, "u0"),
        ((_GOOD, torch.full((1, 8, 8), math.inf)), {}, "v0"),
    ],
)
def test_bad_input_is_rejected(args: tuple, kwargs: dict, name: str) -> None:
    with pytest.raises(SdkdError, match=name):
        simulate(*args, **kwargs)


def test_blow_up_names_dt() -> None:
    u0, v0 = random_initial_condition(1, 32, generator=torch.Generator().manual_seed(4))
    with pytest.raises(SdkdError, match="dt"):
        simulate(u0, v0, du=1.0, dv=1.0, dt=1.0, reaction=False, enforce_stability=False)


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"batch": 0, "n": 8}, "batch"), ({"batch": 1, "n": 1}, "n")]
)
def test_bad_random_initial_condition(kwargs: dict, name: str) -> None:
    with pytest.raises(SdkdError, match=name):
        random_initial_condition(**kwargs)
