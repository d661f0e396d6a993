"""Fisher divergence against the noise level, checked against its closed form for a model whose
score is the exact score of a shifted Gaussian, through both ways a family exposes its score."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from engines.config import RunConfig
from engines.data import GaussianMixture
from engines.run import Run
from engines.score_error import fisher_by_noise_level, fisher_for_run

S0, M, DELTA = 0.3, torch.tensor([[1.0, -2.0]]), torch.tensor([0.4, 0.3])
DATA = GaussianMixture([1.0], M, S0)
WRONG = GaussianMixture([1.0], M + DELTA, S0)     # the "model": right shape, shifted by DELTA


def closed_form(sigma):
    # s_model - s_exact = DELTA / (S0^2 + sigma^2) everywhere: F = 0.5 |DELTA|^2 / (S0^2 + sigma^2)^2
    return 0.5 * float(DELTA @ DELTA) / (S0 ** 2 + sigma ** 2) ** 2


def test_adapter_layout_matches_the_closed_form():
    fam = SimpleNamespace(process=SimpleNamespace(sigma_range=lambda: (0.05, 5.0)),
                          score=lambda x, sigma: WRONG.score(x, sigma[0]), device=torch.device("cpu"))
    c = fisher_by_noise_level(fam, DATA, n_levels=7, n=256)
    assert c.sigma[0] == pytest.approx(0.05) and c.sigma[-1] == pytest.approx(5.0) and len(c.sigma) == 7
    assert np.allclose(c.fisher, [closed_form(s) for s in c.sigma], rtol=1e-4)
    # relative: against 0.5 E|grad log p_sigma|^2 = 0.5 D / (S0^2 + sigma^2) for one Gaussian (in expectation)
    expected_rel = [closed_form(s) / (0.5 * 2 / (S0 ** 2 + s ** 2)) for s in c.sigma]
    assert np.allclose(c.relative, expected_rel, rtol=0.2)


def test_vp_field_layout_maps_to_the_same_ve_curve():
    T = 20
    abar = np.linspace(0.99, 0.05, T)

    def level_alpha_sigma(level):
        a = float(abar[int(level)])
        return math.sqrt(a), math.sqrt(1 - a)

    def field(x_t, level):                         # the exact VP score of the shifted model
        a, s = level_alpha_sigma(level)
        return dict(score=WRONG.vp_marginal(a, s).score(x_t).numpy())

    fam = SimpleNamespace(level=dict(lo=0, hi=T - 1, log=False, integer=True),
                          level_alpha_sigma=level_alpha_sigma, field=field)
    c = fisher_by_noise_level(fam, DATA, n_levels=T, n=256)
    assert len(c.sigma) == T and np.all(np.diff(c.sigma) > 0)
    assert np.allclose(c.sigma, np.sqrt((1 - abar) / abar))      # sigma = s / alpha at each step
    assert np.allclose(c.fisher, [closed_form(s) for s in c.sigma], rtol=1e-4)


def test_exact_family_has_no_score_error_and_an_untrained_net_does():
    exact = fisher_for_run(Run(RunConfig(dataset="8gaussians", family="exact", train=dict(n_data=1000))), n=128)
    assert exact is not None and np.all(exact.relative < 1e-6)
    untrained = fisher_for_run(Run(RunConfig(dataset="8gaussians", family="ncsn", train=dict(n_data=1000))), n=128)
    assert np.all(untrained.relative > 0.3) and np.all(np.diff(untrained.sigma) > 0)


def test_no_curve_without_an_exact_score():
    assert fisher_for_run(Run(RunConfig(dataset="moons", family="ddpm", train=dict(n_data=500)))) is None
    with pytest.raises(ValueError, match="no score"):
        fisher_by_noise_level(SimpleNamespace(name="gan"), DATA)
