"""Flow matching / rectified flow (engines/families/flow_matching.py): its optimal velocity for
Gaussian data is known in closed form, and through the NoiseModel adapter it must read as the
exact denoiser, score and sampler of that data; the family trains and its samples improve."""

import os
import tomllib

import torch
from torch import nn

from engines import families
from engines.config import RunConfig, build
from engines.families.noise_model import SIGMA_MAX
from engines.run import Run

C = 0.6   # data x0 ~ N(0, C^2 I)


class OptimalVelocity(nn.Module):
    """v*(x, t) = E[x1 - x0 | x_t = x] = (t - (1 - t) C^2) x / ((1 - t)^2 C^2 + t^2) for x0 ~ N(0, C^2 I)."""

    def forward(self, x, t):
        t = t.reshape(-1, *([1] * (x.ndim - 1)))
        return (t - (1 - t) * C ** 2) * x / ((1 - t) ** 2 * C ** 2 + t ** 2)


def optimal_family():
    cls = families.get("flow_matching")
    fam = cls(build(cls.Config, dict(hidden=8, depth=1)), (2,), "cpu")
    fam.net = OptimalVelocity()
    return fam


def test_the_optimal_velocity_reads_as_the_exact_denoiser_score_and_field():
    fam = optimal_family()
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for sigma in (0.05, 0.5, 3.0, 50.0):
        s = torch.full((50,), sigma, dtype=torch.float64)
        # Tweedie for N(0, C^2): E[x0 | x0 + sigma z = x] = C^2 x / (C^2 + sigma^2)
        assert torch.allclose(fam.denoise(x, s), C ** 2 * x / (C ** 2 + sigma ** 2), atol=1e-9)
        assert torch.allclose(fam.score(x, s), -x / (C ** 2 + sigma ** 2), atol=1e-9)
    # the field is the implied score of x_t at the level t: -x / Var(x_t)
    t = 0.3
    f = torch.as_tensor(fam.field(x.float(), t)["score"])
    assert torch.allclose(f, -x.float() / ((1 - t) ** 2 * C ** 2 + t ** 2), atol=1e-5)


def test_the_optimal_velocity_minimizes_the_loss_and_its_odes_give_the_data():
    fam = optimal_family()
    x0 = C * torch.randn(20000, 2, generator=torch.Generator().manual_seed(1))
    best = fam.loss(x0, torch.Generator().manual_seed(2))[0]
    fam.net = type("Shifted", (nn.Module,), {"forward": lambda self, x, t: OptimalVelocity()(x, t) + 0.2})()
    worse = fam.loss(x0, torch.Generator().manual_seed(2))[0]
    assert float(best) < float(worse) - 0.05
    fam = optimal_family()
    # (sampler, options, tolerance on the std): first-order Euler is a few % off at 40 steps; Heun's
    # trapezoid in sigma is poor on the first uniform-t step (sigma 999 -> 18), so it gets 40
    for sampler, opts, tol in (("euler", dict(steps=40), 0.035), ("heun", dict(steps=40), 0.015),
                               ("ode_dopri5", {}, 0.015), ("dpmpp_2m", dict(steps=40), 0.015)):
        x = fam.sample(20000, sampler, opts, generator=torch.Generator().manual_seed(3))
        assert abs(float(x.std()) - C) < tol, (sampler, float(x.std()))
    x = fam.sample(20000, "euler", dict(steps=160), generator=torch.Generator().manual_seed(3))
    assert abs(float(x.std()) - C) < 0.01


def test_euler_on_uniform_t_is_rectified_flow_euler():
    """Euler in VE sigma on the uniform-t grid equals x_{t'} = x_t + (t' - t) v(x_t, t) (Liu et al. 2023),
    ending with the step to t = 0."""
    fam = optimal_family()
    steps, eps = 8, fam.cfg.t_eps
    top = fam.process.t_of_sigma(torch.tensor([SIGMA_MAX], dtype=torch.float64)).item()   # t = s / (1 + s)
    ts = torch.linspace(top, eps, steps, dtype=torch.float64).tolist() + [0.0]
    got = fam.sample(100, "euler", dict(steps=steps, grid="native"), generator=torch.Generator().manual_seed(4))
    # the same prior draw: VE coordinates x = x_T / alpha_T, so x_T = (1 - t_0) x
    x = (1 - ts[0]) * fam.process.prior_std(SIGMA_MAX) * torch.randn((100, 2), generator=torch.Generator().manual_seed(4))
    x = x.double()
    for t, t2 in zip(ts[:-1], ts[1:]):
        x = x + (t2 - t) * fam.velocity(x, torch.full((100,), t, dtype=torch.float64))
    assert torch.allclose(got.double(), x, atol=1e-4)


def test_flow_matching_trains_and_its_samples_improve():
    run = Run(RunConfig(dataset="moons", family="flow_matching", options=dict(hidden=32, depth=2),
                        train=dict(batch=128, seed=0, ema=0.9, n_data=4000)))

    def quality():
        return run.evaluate(run.sample(2000, "euler", dict(steps=20), seed=1))["energy_distance_x_iid"]

    before = quality()
    run.train(600)                        # ~4 s on one loaded core
    after = quality()
    # measured (seeds 0, 1, 2): 26x -> 6.5x, 23x -> 4.7x, 22x -> 5.2x
    assert after < 0.4 * before, (before, after)


def test_preset_states_the_objective():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "resources", "presets", "flow_matching_moons.toml")
    with open(path, "rb") as f:
        p = tomllib.load(f)
    assert p["family"] == "flow_matching" and p["sampler"] in families.get("flow_matching").samplers
    assert "(1 - t) x0 + t x1" in p["lesson"] and "x1 - x0" in p["lesson"] and "probability-flow ODE" in p["lesson"]
