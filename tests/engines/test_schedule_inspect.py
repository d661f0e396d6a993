"""Schedule inspector engine: curves against closed forms, the safe formula parser, the forward
process, each warning firing on a bad schedule and silent on a good one, and the loss-per-t bins."""
import math

import numpy as np
import pytest
import torch
from scipy import optimize
from scipy.stats import norm

from engines import data as D
from engines.loss_bins import LossBins
from engines.safe_expr import ExpressionError, evaluate
from engines.schedule_inspect import (STANDARD_SPECS, ScheduleError, ScheduleSpec, forward_process,
                                      schedule_curves, spec_from_family)
from engines.schedule_warnings import (data_geometry, gaussian_fit_prior_kl, max_level_ratio, prior_kl,
                                       schedule_warnings, shell_overlap)

BAD_T50 = ScheduleSpec("linear", 50)          # tiny-diffusion's schedule: 1e-4..0.02 unscaled


@pytest.fixture(scope="module")
def moons():
    x = D.load("moons", 4000, seed=0)
    return ((x - x.mean(0)) / x.std(0).mean()).numpy()   # what the Run's families see


@pytest.fixture(scope="module")
def geometry(moons):
    return data_geometry(moons)


def codes(spec, geometry):
    return {w.code for w in schedule_warnings(spec, geometry, kl_samples=500)}


# ----------------------------------------------------------------------------- curves

def test_linear_T50_alpha_bar_closed_form():
    c = schedule_curves(BAD_T50)
    beta = np.linspace(1e-4, 0.02, 50)
    assert np.allclose(c.alpha_bar, np.cumprod(1 - beta), rtol=1e-12)
    assert c.alpha_bar[-1] == pytest.approx(0.603, abs=0.002)
    assert np.allclose(c.t, np.arange(1, 51) / 50)
    assert np.allclose(c.log_snr, -2 * np.log(c.sigma))
    assert np.allclose(c.sigma ** 2, (1 - c.alpha_bar) / c.alpha_bar)


def test_ve_ladder_has_vp_equivalent_curves():
    c = schedule_curves(ScheduleSpec("ve_geometric", 10, sigma_min=0.01, sigma_max=10.0))
    assert c.process == "ve" and c.sigma[0] == pytest.approx(0.01) and c.sigma[-1] == pytest.approx(10.0, rel=1e-6)
    assert np.allclose(np.diff(np.log(c.sigma)), math.log(1000) / 9, rtol=1e-5)      # geometric
    assert np.allclose(c.alpha_bar, 1 / (1 + c.sigma ** 2))
    assert np.allclose(np.cumprod(1 - c.beta), c.alpha_bar)                            # beta consistent


def test_every_standard_schedule_builds_monotone_curves():
    for spec in STANDARD_SPECS:
        c = schedule_curves(spec)
        assert np.all(np.diff(c.log_snr) < 0), spec.name
        assert np.all((c.alpha_bar > 0) & (c.alpha_bar < 1)) and np.all(c.beta > 0), spec.name


def test_formula_schedule_matches_its_closed_form_and_points_interpolate():
    c = schedule_curves(ScheduleSpec("formula", 64, formula="exp(-5 * t ** 2)"))
    assert np.allclose(c.alpha_bar, np.exp(-5 * (np.arange(1, 65) / 64) ** 2))
    c = schedule_curves(ScheduleSpec("formula", 20, formula="0.01 * 1000 ** t", quantity="sigma"))
    assert c.process == "ve" and np.allclose(c.sigma, 0.01 * 1000 ** (np.arange(1, 21) / 20))
    c = schedule_curves(ScheduleSpec("points", 10, quantity="sigma", points=((0, 0.1), (1, 10.0))))
    assert c.sigma[4] == pytest.approx(0.1 * 100 ** 0.5, rel=1e-9)                     # log-linear at t = 0.5


@pytest.mark.parametrize("text", ["__import__('os').system('true')", "t.real", "(lambda: 1)()", "[t]",
                                  "'a'", "open('x')", "t if t else 1", "x + 1", "True + t"])
def test_formula_parser_refuses_anything_but_arithmetic(text):
    with pytest.raises(ExpressionError):
        evaluate(text, t=np.ones(3))


def test_formula_errors_are_schedule_errors_with_a_reason():
    assert evaluate("9 ** 9 ** 9", t=0.0) == np.inf           # floats: no huge integer is ever built
    with pytest.raises(ScheduleError, match="must not increase"):
        schedule_curves(ScheduleSpec("formula", 10, formula="t"))
    with pytest.raises(ScheduleError, match="formula"):
        schedule_curves(ScheduleSpec("formula", 10, formula="sin("))
    with pytest.raises(ScheduleError, match="not finite"):
        schedule_curves(ScheduleSpec("formula", 10, formula="log(t - 1)", quantity="log_snr"))


def test_forward_process_moments_and_shared_noise():
    x0 = np.tile([[2.0, -1.0]], (20000, 1))
    c = schedule_curves(BAD_T50)
    f = forward_process(c, x0, 1.0, seed=3)
    a, s = math.sqrt(c.alpha_bar[-1]), math.sqrt(1 - c.alpha_bar[-1])
    assert (f.alpha, f.std) == pytest.approx((a, s))
    assert f.x.mean(0) == pytest.approx(a * x0[0], abs=0.02)
    assert f.x.std(0) == pytest.approx([s, s], rel=0.02)
    g = forward_process(schedule_curves(ScheduleSpec("cosine", 50)), x0, 1.0, seed=3)
    z_f, z_g = (f.x - f.alpha * x0) / f.std, (g.x - g.alpha * x0) / g.std
    assert np.allclose(z_f, z_g)                               # side by side: the same z
    assert np.array_equal(forward_process(c, x0, 0.0).x, x0)   # t = 0 is the data


# ----------------------------------------------------------------------------- maths of the warnings

def test_prior_kl_of_one_point_is_the_gaussian_closed_form():
    x = np.array([[1.5, -0.5]])
    a, s = 0.7, 0.6
    exact = 0.5 * (2 * s ** 2 + a ** 2 * (x ** 2).sum() - 2 - 2 * math.log(s ** 2))
    assert prior_kl(x, a, s, n_samples=20000) == pytest.approx(exact, rel=0.03)
    assert gaussian_fit_prior_kl(np.array([[1.5, -0.5], [1.5, -0.5]]), a, s) == pytest.approx(exact, rel=1e-9)


def test_gaussian_fit_kl_is_a_lower_bound(moons):
    a, s = 0.77, 0.63
    assert gaussian_fit_prior_kl(moons, a, s) <= prior_kl(moons[:1000], a, s, n_samples=3000) + 0.01


def test_technique2_ratio_matches_the_papers_gaussian_approximation_in_high_dimension():
    D = 3072  # CIFAR-10, where the paper's |x| ~ N(sqrt(D) sigma, sigma^2 / 2) is accurate
    paper = optimize.brentq(lambda g: norm.cdf(math.sqrt(2 * D) * (g - 1) + 3 * g)
                            - norm.cdf(math.sqrt(2 * D) * (g - 1) - 3 * g) - 0.5, 1.0, 2.0)
    assert max_level_ratio(D) == pytest.approx(paper, rel=2e-3)
    assert shell_overlap(max_level_ratio(2), 2) == pytest.approx(0.5, abs=1e-6)
    assert max_level_ratio(2) > max_level_ratio(10) > max_level_ratio(784) > 1


# ----------------------------------------------------------------------------- each warning

def test_prior_mismatch_fires_on_T50_unscaled_and_names_the_fix(geometry):
    (w,) = [w for w in schedule_warnings(BAD_T50, geometry, kl_samples=500) if w.code == "prior_mismatch"]
    assert w.measured == pytest.approx(0.603, abs=0.002)
    assert "KL" in w.detail and "scale_betas" in w.fix and "cosine" in w.fix
    kl = float(w.detail.split("= ")[2].split(" nats")[0])
    assert kl > 0.02
    for good in (ScheduleSpec("linear", 50, scale_betas=True), ScheduleSpec("linear", 1000), ScheduleSpec("cosine", 50)):
        assert "prior_mismatch" not in codes(good, geometry), good.name


def test_sigma_max_below_largest_pairwise_distance(geometry):
    assert 3.0 < geometry.max_pairwise < 6.0
    bad = ScheduleSpec("ve_geometric", 30, sigma_min=0.01, sigma_max=1.0)
    good = ScheduleSpec("ve_geometric", 30, sigma_min=0.01, sigma_max=geometry.max_pairwise * 1.05)
    assert "sigma_max_small" in codes(bad, geometry)
    assert "sigma_max_small" not in codes(good, geometry)


def test_too_few_levels(geometry):
    bad = ScheduleSpec("ve_geometric", 2, sigma_min=0.01, sigma_max=10.0)
    (w,) = [w for w in schedule_warnings(bad, geometry) if w.code == "too_few_levels"]
    need = int(w.fix.split("at least ")[1].split()[0])
    assert "too_few_levels" not in codes(ScheduleSpec("ve_geometric", need, sigma_min=0.01, sigma_max=10.0), geometry)
    assert "too_few_levels" in codes(ScheduleSpec("karras", 5, sigma_min=0.002, sigma_max=80.0), geometry)
    assert "too_few_levels" not in codes(ScheduleSpec("karras", 40, sigma_min=0.002, sigma_max=80.0), geometry)
    assert "too_few_levels" not in codes(ScheduleSpec("cosine", 100), geometry)   # VP chains: not a ladder


def test_smallest_level_coarser_than_the_datas_detail(geometry):
    assert 0.01 < geometry.detail < 0.2
    assert "sigma_min_coarse" in codes(ScheduleSpec("linear", 1000, beta_start=0.01, beta_end=0.05), geometry)
    assert "sigma_min_coarse" in codes(ScheduleSpec("ve_geometric", 30, sigma_min=0.3, sigma_max=6.0), geometry)
    assert "sigma_min_coarse" not in codes(ScheduleSpec("linear", 1000), geometry)
    assert "sigma_min_coarse" not in codes(ScheduleSpec("ve_geometric", 30, sigma_min=0.01, sigma_max=6.0), geometry)


def test_good_schedules_raise_no_warning(geometry):
    for spec in (ScheduleSpec("linear", 1000), ScheduleSpec("cosine", 100), ScheduleSpec("linear", 100, scale_betas=True),
                 ScheduleSpec("ve_geometric", 20, sigma_min=0.01, sigma_max=5.0)):
        assert codes(spec, geometry) == set(), spec.name


def test_spec_from_a_ddpm_run_reads_its_schedule():
    from engines.config import RunConfig
    from engines.run import Run
    run = Run(RunConfig(dataset="moons", family="ddpm", options=dict(T=50, schedule="linear", scale_betas=False),
                        train=dict(n_data=500)))
    spec = spec_from_family(run.family)
    assert (spec.kind, spec.T, spec.scale_betas) == ("linear", 50, False)
    assert np.allclose(schedule_curves(spec).alpha_bar, run.family.abar.numpy())


# ----------------------------------------------------------------------------- loss per t-bin

def test_loss_bins_means_and_bounded_rows():
    bins = LossBins(n_bins=4, row_steps=2, max_rows=3)
    g = torch.Generator().manual_seed(0)
    seen = []
    for _ in range(10):
        t, loss = torch.rand(64, generator=g) * 0.5, torch.rand(64, generator=g)   # only bins 0 and 1
        bins.add(t, loss)
        seen.append((t, loss))
    strip = bins.strip()
    assert strip.mean_loss.shape == (3, 4) and list(strip.steps) == [6, 8, 10]      # the oldest rows dropped
    t, loss = torch.cat([s[0] for s in seen[-2:]]), torch.cat([s[1] for s in seen[-2:]])
    assert strip.mean_loss[-1, 0] == pytest.approx(float(loss[t < 0.25].mean()), rel=1e-5)
    assert np.isnan(strip.mean_loss[:, 2:]).all() and (strip.counts[:, 2:] == 0).all()
    rel = strip.relative()
    assert np.allclose(rel[:, :2], strip.mean_loss[:, :2] / strip.mean_loss[0, :2]) and np.isnan(rel[:, 2:]).all()


def test_ddpm_loss_feeds_the_bins_on_normalized_time():
    from engines.config import RunConfig
    from engines.run import Run
    run = Run(RunConfig(dataset="moons", family="ddpm", options=dict(T=20), train=dict(n_data=500, batch=64)))
    bins = LossBins(n_bins=20, row_steps=5).attach(run.family)
    run.train(10)
    t, per = run.family.last_t_loss
    assert t.min() >= 1 / 20 and t.max() <= 1 and per.shape == (64,)
    strip = bins.strip()
    assert strip.mean_loss.shape == (2, 20) and strip.counts.sum() == 10 * 64


# ----------------------------------------------------------------------------- from what a run publishes

def test_run_schedule_curves_become_specs_that_reproduce_them():
    from engines.inspector import spec_from_run_schedule
    b = np.linspace(1e-4, 0.02, 50)
    abar = np.cumprod(1 - b)
    spec = spec_from_run_schedule(dict(x_label="step t", alpha_bar=(np.arange(50), abar)))
    assert np.allclose(schedule_curves(spec).alpha_bar, abar) and spec.process == "vp"
    sig = np.geomspace(5.0, 0.03, 20)                                  # an NCSN ladder, descending
    spec = spec_from_run_schedule({"x_label": "noise level sigma", "level i": (sig, np.arange(1, 21))})
    assert spec.process == "ve" and np.allclose(schedule_curves(spec).sigma, sig[::-1], rtol=1e-9)
    t = np.linspace(1e-3, 1, 201)
    a = np.exp(-0.5 * (0.1 * t + 9.95 * t ** 2))                      # VP SDE, beta in [0.1, 20]
    spec = spec_from_run_schedule(dict(x_label="time t", mean_coef=(t, a), std=(t, np.sqrt(1 - a ** 2))))
    assert spec.process == "vp" and schedule_curves(spec).alpha_bar[-1] == pytest.approx(a[-1] ** 2, rel=1e-9)
    assert spec_from_run_schedule({}) is None


def test_custom_specs_refuse_bad_text_with_the_reason():
    from engines.inspector import custom_spec
    assert custom_spec("points", "0:0.01, 1:10", "sigma", 20).process == "ve"
    with pytest.raises(ScheduleError, match="t:value"):
        custom_spec("points", "0.5", "sigma")
    with pytest.raises(ScheduleError, match=r"\[0, 1\]"):
        custom_spec("points", "0:1, 2:3", "sigma")
    with pytest.raises(ScheduleError, match="not allowed"):
        custom_spec("formula", "open('x')")


def test_probe_collects_the_strip_and_checkpoints_beside_training():
    from engines.config import RunConfig
    from engines.inspector import InspectorProbe
    from engines.run import Run
    run = Run(RunConfig(dataset="moons", family="ddpm", options=dict(T=20), train=dict(n_data=500, batch=64)))
    probe = InspectorProbe(run)
    for _ in range(6):
        run.train(5)
        probe.after_train(run)
    extras = probe.extras(run)
    assert extras.step == 30 and extras.checkpoint_steps[0] == 0 and extras.checkpoint_steps[-1] <= 30
    assert extras.strip.counts.sum() == 30 * 64 and extras.fisher is None          # moons: no exact score
    probe.close(run)
    run.train(1)
    assert probe.extras(run).strip.counts.sum() == 30 * 64                         # detached


def test_probe_computes_the_fisher_curve_at_most_every_few_seconds():
    from engines.config import RunConfig
    from engines.inspector import InspectorProbe
    from engines.run import Run
    run = Run(RunConfig(dataset="8gaussians", family="ddpm", options=dict(T=20), train=dict(n_data=500, batch=64)))
    now = [0.0]
    probe = InspectorProbe(run, fisher_every_s=2.0, clock=lambda: now[0])
    first = probe.extras(run).fisher
    assert first is not None and first.step == 0 and len(first.sigma) == 12
    run.train(2)
    now[0] = 1.0
    assert probe.extras(run).fisher is first                                          # too soon: the old curve
    now[0] = 2.5
    assert probe.extras(run).fisher.step == 2


def test_loss_bins_leave_non_finite_losses_out():
    bins = LossBins(n_bins=2, row_steps=10)
    bins.add(torch.tensor([0.1, 0.2, 0.9]), torch.tensor([1.0, float("nan"), 3.0]))
    bins.close_row(step=7)
    strip = bins.strip()
    assert list(strip.steps) == [7] and strip.mean_loss.tolist() == [[1.0, 3.0]] and strip.counts.tolist() == [[1, 1]]
