"""Comparisons: item parsing, the shared initial noise, fair sharing (fake clock), the scrubber's
noise-level alignment, the table's leaders and CSV, and the headless `compare` command."""
import csv
import io
import json
import math

import numpy as np
import pytest
import torch

from engines import samplers as S
from engines.compare import align, fair, spec, table
from engines.compare.runner import Budget, Settings, train_in_turn
from engines.config import ConfigError, RunConfig


def base(**kw):
    d = dict(dataset="moons", family="ddpm", train=dict(n_data=400, seed=3))
    d.update(kw)
    return RunConfig(**d)


# ---------------------------------------------------------------------------------------- parsing

def test_family_names_give_one_run_each_with_the_shared_seed():
    comp = spec.make(base(), "ddpm,ncsn,score_sde")
    assert [r.cfg.family for r in comp.runs] == ["ddpm", "ncsn", "score_sde"]
    assert comp.labels == ["ddpm", "ncsn", "score_sde"]
    assert {r.cfg.train.seed for r in comp.runs} == {3}
    assert {r.cfg.train.n_data for r in comp.runs} == {400}
    assert comp.sample_seed == 4


def test_key_value_items_change_one_thing_and_label_it():
    comp = spec.make(base(options=dict(T=50)), "ddpm:schedule=linear,ddpm:schedule=cosine")
    assert [r.cfg.options["schedule"] for r in comp.runs] == ["linear", "cosine"]
    assert [r.cfg.options["T"] for r in comp.runs] == [50, 50]          # the base's options carry over
    assert comp.labels == ["schedule=linear", "schedule=cosine"]
    comp = spec.make(base(), "ddpm,ddpm:sampler=ddim:sampler.steps=10,lr=1e-3")
    r = comp.runs[1].cfg
    assert r.sampler == "ddim" and r.sampler_options == {"steps": "10"}
    assert comp.runs[2].cfg.train.lr == 1e-3 and comp.runs[0].cfg.train.lr != 1e-3
    assert comp.runs[2].cfg.family == "ddpm"        # no family: the base's


def test_seed_is_a_variation_but_the_sampler_noise_stays_shared():
    comp = spec.make(base(), "ddpm,ddpm:seed=7")
    assert [r.cfg.train.seed for r in comp.runs] == [3, 7]
    assert comp.sample_seed == 4


@pytest.mark.parametrize("items, words", [
    ("ddpm", ["2 to 4 runs", "got 1"]),
    ("ddpm,ncsn,dsm,vae,gan", ["2 to 4 runs", "got 5"]),
    ("ddpm,nosuch", ["'nosuch'", "no family named"]),
    ("ddpm,ddpm:shedule=linear", ["'ddpm:shedule=linear'", "unknown option 'shedule'"]),
    ("ddpm,ddpm:T=1", ["'ddpm:T=1'", "T: 1 is below"]),
    ("ddpm,ddpm:schedule=zigzag", ["schedule: 'zigzag' is not one of"]),
    ("ddpm,ddpm:sampler=euler_maruyama", ["has no sampler 'euler_maruyama'"]),
    ("ddpm,ddpm:sampler=ddim:sampler.steps=0", ["steps: 0 is below"]),
    ("ddpm,ddpm:dataset=gmm", ["share one dataset"]),
    ("ddpm,ddpm:n_data=50", ["n_data is shared"]),
    ("ddpm,,ncsn", ["empty item"]),
    ("ddpm,ddpm:lr", ["'lr' is not key=value"]),
])
def test_bad_items_fail_with_the_item_and_what_is_allowed(items, words):
    with pytest.raises(ConfigError) as e:
        spec.make(base(), items)
    for w in words:
        assert w in str(e.value)


def test_replace_remove_and_add_leave_the_other_runs_alone():
    comp = spec.make(base(), "ddpm:schedule=linear,ddpm:schedule=cosine,ncsn")
    changed = comp.replace_run(1, "ddpm:schedule=sigmoid")
    assert [r.cfg.options.get("schedule") for r in changed.runs] == ["linear", "sigmoid", None]
    assert changed.runs[0].cfg == comp.runs[0].cfg and changed.runs[2].cfg == comp.runs[2].cfg
    fewer = comp.without(0)
    assert [r.cfg.family for r in fewer.runs] == ["ddpm", "ncsn"] and fewer.runs[1] is comp.runs[2]
    more = comp.with_added("score_sde")
    assert len(more.runs) == 4
    with pytest.raises(ConfigError, match="at most 4"):
        more.with_added("dsm")


def test_comparison_presets_parse(tmp_path):
    for name in ("compare_linear_vs_cosine", "compare_ddpm_vs_ddim10", "compare_plain_vs_annealed",
                 "compare_vae_gan_flow"):
        comp = spec.load_preset(name)
        assert 2 <= len(comp.runs) <= 4 and comp.title
    p = tmp_path / "bad.toml"
    p.write_text('dataset = "moons"\nfamily = "ddpm"\n[compare]\nruns = ["ddpm", "ddpm:T=0"]\n')
    with pytest.raises(ConfigError, match="T: 0 is below"):
        spec.load_preset(str(p))
    p.write_text('dataset = "moons"\n[compare]\nrun = ["ddpm", "ncsn"]\n')
    with pytest.raises(ConfigError, match="unknown \\[compare\\] key 'run'"):
        spec.load_preset(str(p))


# ------------------------------------------------------------------------------- shared noise

class SamplerSpy:
    """Records the x every engines.samplers function is handed: the sampler's starting point x_T."""

    def __init__(self, monkeypatch):
        self.starts = []
        for name in dir(S):
            fn = getattr(S, name)
            if callable(fn) and not name.startswith("_") and getattr(fn, "__module__", "") == S.__name__:
                monkeypatch.setattr(S, name, self._wrap(fn))

    def _wrap(self, fn):
        def spy(model_fn, x, *a, **kw):
            if torch.is_tensor(x) and x.is_floating_point():
                self.starts.append(x.detach().clone())
            return fn(model_fn, x, *a, **kw)
        return spy


def _first_start(run, n, seed, monkeypatch):
    spy = SamplerSpy(monkeypatch)
    run.sample(n, seed=seed)
    assert spy.starts, f"{run.cfg.family} sampled without an engines.samplers function"
    return spy.starts[0]


def test_every_noise_based_run_starts_from_the_same_noise(monkeypatch):
    """Equal seeds give identical x_T (up to each process's prior scale sigma_max): the first
    thing every noise-based family draws from the sampler generator is the start noise."""
    comp = spec.make(RunConfig(dataset="gmm", family="ddpm", train=dict(n_data=300, seed=0)),
                     "ddpm:T=20:hidden=8,ddpm:T=20:hidden=8:sampler=ddim:sampler.steps=4,"
                     "ncsn:hidden=8:sampler.steps_per_level=1,score_sde:hidden=8:sampler.steps=5")
    from engines.run import Run
    data = spec.shared_data(comp)
    n = 32
    z = spec.initial_noise(n, (2,), comp.sample_seed)
    starts = []
    for cfg in spec.run_configs(comp):
        run = Run(cfg, data=data)
        starts.append(_first_start(run, n, comp.sample_seed, monkeypatch))
        monkeypatch.undo()
    assert torch.equal(starts[0], starts[1])                      # DDPM and DDIM: the very same x_T
    assert torch.allclose(starts[0], z.to(starts[0].dtype), atol=1e-6)
    for x in starts[2:]:                                          # NCSN / SDE: sigma_max * the same z
        scale = float((x * z).sum() / (z * z).sum())
        assert scale > 0 and torch.allclose(x, scale * z, rtol=1e-5, atol=1e-5 * scale)


def test_a_different_seed_gives_different_noise():
    assert not torch.equal(spec.initial_noise(8, (2,), 1), spec.initial_noise(8, (2,), 2))


# ------------------------------------------------------------------------- fair CPU sharing

def test_thread_budgets_split_the_cores():
    assert fair.thread_budgets(4, cores=8) == [2, 2, 2, 2]
    assert fair.thread_budgets(3, cores=8) == [3, 3, 2]
    assert fair.thread_budgets(4, cores=2, reserve=1) == [1, 1, 1, 1]
    assert fair.concurrent_slots(4, cores=2, reserve=1) == 1
    assert fair.thread_budgets(2, cores=8, slots=1) == [8, 8]       # in turn: each has all cores
    assert sum(fair.thread_budgets(3, cores=16)) == 16


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeRun:
    """Trains at a fixed cost per step on a fake clock; stops training after `diverge_at` steps."""

    def __init__(self, clock, cost, diverge_at=None):
        self.clock, self.cost, self.step, self.diverge_at = clock, cost, 0, diverge_at

    def train(self, k):
        if self.diverge_at is not None:
            k = max(0, min(k, self.diverge_at - self.step))
        self.clock.now += k * self.cost
        self.step += k
        return k


def test_equal_steps_whatever_the_speed():
    clock = FakeClock()
    runs = [FakeRun(clock, 0.001), FakeRun(clock, 0.004), FakeRun(clock, 0.002)]
    share = fair.FairShare(3, "steps", budget=300)
    order = []
    fair.run_in_turn(runs, share, chunk=40, clock=clock, on_chunk=lambda i, k, dt: order.append(i))
    assert [r.step for r in runs] == [300, 300, 300]
    assert share.seconds == pytest.approx([0.3, 1.2, 0.6])
    assert order[:3] == [0, 1, 2]                                  # turns rotate, most-behind first


def test_equal_time_gives_fast_runs_more_steps():
    clock = FakeClock()
    runs = [FakeRun(clock, 0.001), FakeRun(clock, 0.004)]
    share = fair.FairShare(2, "time", budget=1.0)
    fair.run_in_turn(runs, share, chunk=1000, clock=clock, slice_seconds=0.05)
    for s in share.seconds:                                        # each within one turn of 1 s
        assert 1.0 <= s <= 1.0 + 0.05 + 1e-9
    assert runs[0].step / runs[1].step == pytest.approx(4.0, rel=0.1)


def test_a_run_that_stops_training_does_not_hold_the_others():
    clock = FakeClock()
    runs = [FakeRun(clock, 0.001, diverge_at=30), FakeRun(clock, 0.001)]
    share = fair.FairShare(2, "steps", budget=200)
    fair.run_in_turn(runs, share, chunk=20, clock=clock)
    assert runs[0].step == 30 and runs[1].step == 200 and share.active == [False, True]


def test_concurrent_workers_only_the_most_behind_train():
    share = fair.FairShare(3, "steps", slots=1)
    share.record(0, 100, 1.0)
    share.record(1, 50, 1.0)
    assert [share.may_train(i) for i in range(3)] == [False, False, True]
    share.record(2, 200, 1.0)
    assert share.next_run() == 1
    share.remove(1)
    assert share.next_run() == 0
    two = fair.FairShare(3, "time", slots=2)
    two.record(0, 10, 3.0)
    assert [two.may_train(i) for i in range(3)] == [False, True, True]


# --------------------------------------------------------------------------------- scrubber

def _traj(sigma, t=None):
    sigma = np.asarray(sigma, float)
    return dict(frames=np.zeros((len(sigma), 4, 2)), i=np.arange(len(sigma)),
                t=np.full(len(sigma), np.nan) if t is None else np.asarray(t, float), sigma=sigma)


def test_scrubber_aligns_runs_by_noise_level():
    fine = np.geomspace(80.0, 0.01, 100)                     # a 100-step chain
    coarse = fine[::11]                                      # 10 steps of the same ladder
    ladder = np.repeat(np.geomspace(10.0, 0.05, 8), 5)      # NCSN: 8 levels x 5 steps
    langevin = np.zeros(50)                                  # plain Langevin: no noise levels
    sc = align.Scrubber([_traj(fine, t=np.arange(99, -1, -1)), _traj(coarse), _traj(ladder), _traj(langevin)])
    assert sc.frames(0.0) == [0, 0, 0, 0]
    assert sc.frames(1.0) == [99, len(coarse) - 1, 39, 49]
    for p in (0.2, 0.5, 0.8):
        target = sc.target_sigma(p)
        f = sc.frames(p)
        # each run's frame is its closest noise level to the target (within its own grid spacing)
        assert abs(math.log(fine[f[0]] / target)) <= abs(math.log(fine[1] / fine[0]))
        assert abs(math.log(coarse[f[1]] / target)) <= abs(math.log(coarse[1] / coarse[0])) / 2 + 1e-9
        assert f[3] == round(p * 49)
    # a ladder whose largest sigma (10) is below the target waits at its first frame
    assert sc.frame(2, 0.05) == 0 and sc.target_sigma(0.05) > 10
    assert sc.label(0, 0.0) == "t=99" and sc.label(2, 1.0).startswith("\u03c3=")
    assert sc.label(3, 1.0) == "step 50/50"


# ------------------------------------------------------------------------------------ table

def _table():
    rows = (table.Row.of("a", "ddpm", quality_x_iid=1.2, nfe=100, steps_per_s=50, parameters=1000,
                         seconds_to_target=4.0, steps=200, train_seconds=4.0),
            table.Row.of("b", "vae", nll_unit="nats", quality_x_iid=2.5, nll=1.7, nfe=1, steps_per_s=80,
                         parameters=1000, seconds_to_target=None, steps=320, train_seconds=4.0),
            table.Row.of("c", "realnvp", nll_unit="nats", quality_x_iid=float("nan"), nll=1.2, nfe=1,
                         steps_per_s=20, parameters=3000, seconds_to_target=2.5, steps=80, train_seconds=4.0))
    return table.ComparisonTable(rows, target_quality=1.5)


def test_leaders_follow_each_columns_direction():
    lead = _table().leaders()
    assert lead["quality_x_iid"] == (0,)          # NaN never leads
    assert lead["nll"] == (2,)                    # lower NLL
    assert lead["nfe"] == (1, 2)                  # ties share the lead
    assert lead["steps_per_s"] == (1,)            # higher is better
    assert lead["parameters"] == (0, 1)
    assert lead["seconds_to_target"] == (2,)      # never reaching the target never leads
    assert "steps" not in lead                    # informative columns have no leader


def test_nlls_in_different_units_do_not_compete():
    rows = (table.Row.of("a", "vae", nll_unit="nats", nll=1.0), table.Row.of("b", "x", nll_unit="bits/dim", nll=0.5))
    assert table.ComparisonTable(rows).leaders()["nll"] == ()


def test_csv_holds_the_raw_values_and_the_leads():
    t = _table()
    rows = list(csv.reader(io.StringIO(t.to_csv())))
    assert rows[0][:3] == ["run", "family", "quality_x_iid"] and rows[0][-2:] == ["nll_unit", "leads"]
    assert len(rows) == 4
    b = dict(zip(rows[0], rows[2]))
    assert float(b["steps_per_s"]) == 80 and b["seconds_to_target"] == "" and b["nll_unit"] == "nats"
    assert set(b["leads"].split(";")) == {"nfe", "steps_per_s", "parameters"}
    text = t.to_text()
    assert "time to 1.5x iid (s)" in text and "NLL (nats)" in text and "1.2*" in text
    assert json.loads(json.dumps(t.to_json()))["runs"][2]["leads"] == ["nll", "nfe", "seconds_to_target"]


def test_rows_refuse_unknown_columns():
    with pytest.raises(KeyError, match="quality"):
        table.Row.of("a", "ddpm", qualty=1.0)


# ---------------------------------------------------------------------------- headless runs

def test_in_turn_table_matches_each_runs_own_numbers():
    """Two DDPMs from one model config, sampled by DDPM (T=20 network calls) and DDIM (5): equal
    steps, NFE in closed form, and each row's quality is what the run itself measures."""
    comp = spec.make(RunConfig(dataset="moons", family="ddpm", options=dict(T=20, hidden=16, depth=2),
                               train=dict(n_data=400, batch=64, seed=1)),
                     "sampler=ddpm,sampler=ddim:sampler.steps=5")
    st = Settings(n_final=200, n_eval=64, checkpoints=2, chunk=10, slice_seconds=None)
    tab, runs = train_in_turn(comp, Budget(steps=30), st)
    assert [r.step for r in runs] == [30, 30]
    assert [r.get("nfe") for r in tab.rows] == [20, 5]
    assert [r.get("steps") for r in tab.rows] == [30, 30]
    for row, run in zip(tab.rows, runs):
        own = run.evaluate(run.sample(200, seed=comp.sample_seed))
        from engines.compare.measure import quality_of
        assert row.get("quality_x_iid") == pytest.approx(quality_of(own), rel=1e-6)
        assert row.get("parameters") == sum(p.numel() for p in run.family.net.parameters())
    # identical training (same seed, same model): the sampler is the only difference
    for a, b in zip(runs[0].family.net.parameters(), runs[1].family.net.parameters()):
        assert torch.equal(a, b)
    assert tab.leaders()["nfe"] == (1,)


def test_compare_command_writes_the_table(tmp_path, capsys):
    from engines.cli import main as cli
    out, csv_path = tmp_path / "out.json", tmp_path / "t.csv"
    rc = cli(["compare", "--dataset", "moons", "--families", "ddpm:T=10:hidden=8,gmm_em", "--steps", "5",
              "--n-eval", "100", "--set", "train.n_data=300", "--json", str(out), "--csv", str(csv_path)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    d = json.loads(cap.out.strip().splitlines()[-1])
    assert [r["label"] for r in d["runs"]] == ["ddpm T=10 hidden=8", "gmm_em"]
    assert json.loads(out.read_text())["runs"][0]["steps"] == 5
    assert "quality (x iid)" in cap.err and csv_path.read_text().startswith("run,family")
    assert cli(["compare", "--families", "ddpm,ddpm:T=0", "--steps", "5"]) == 2
    assert "T: 0 is below" in capsys.readouterr().err


def test_turns_go_to_the_most_behind_run():
    share = fair.FairShare(3, "steps", slots=1)
    turns = fair.Turns(share, quantum=0.1)
    assert turns.acquire(1) is False            # run 0 is as far behind, and first
    assert turns.acquire(0) is True
    assert turns.acquire(2) is False            # one slot, held by 0
    turns.record(0, 10, 0.05)
    assert turns.acquire(0) is True             # its turn lasts a quantum of training time
    turns.record(0, 10, 0.06)
    assert turns.holders() == []
    assert turns.acquire(0) is False and turns.acquire(2) is False   # 1 is the most behind
    assert turns.acquire(1) is True
    turns.record(1, 30, 0.2)
    turns.remove(2)                             # a run that cannot train holds no one back
    assert turns.acquire(0) is True
    turns.reset(2)                              # rebuilt: it starts from zero and goes first
    turns.record(0, 1, 0.2)
    assert turns.acquire(2) is True and share.active[2] is True
    # equal steps over many turns, at different speeds
    share = fair.FairShare(2, "steps", slots=1)
    turns = fair.Turns(share, quantum=0.05)
    cost = [0.001, 0.003]
    for _ in range(400):
        for i in (0, 1):
            if turns.acquire(i):
                turns.record(i, 5, 5 * cost[i])
    assert abs(share.steps[0] - share.steps[1]) <= 0.05 / 0.001 + 5
    turns.set_mode("time")                      # from now on: equal training time
    for _ in range(400):
        for i in (0, 1):
            if turns.acquire(i):
                turns.record(i, 5, 5 * cost[i])
    assert abs(share.seconds[0] - share.seconds[1]) <= 0.05 + 5 * max(cost)
    with pytest.raises(ValueError):
        turns.set_mode("fastest")


def test_vp_marginal_std_is_aligned_as_noise_to_signal():
    """A VP reverse SDE reports s(t) = sqrt(1 - abar); DDPM reports sqrt((1 - abar)/abar): the same
    noise level must land on the same scrubber position."""
    abar = np.linspace(0.999, 1e-3, 50)                  # t = 0 .. T
    ddpm_sigma = np.sqrt((1 - abar) / abar)
    vp_std = np.sqrt(1 - abar)
    comp = spec.make(base(), "ddpm,score_sde")
    kinds = [align.marginal_kind(r.cfg) for r in comp.runs]
    assert kinds == [None, "vp"]
    np.testing.assert_allclose(align.ve_sigma(vp_std, "vp"), ddpm_sigma, rtol=1e-9)
    sc = align.Scrubber([_traj(ddpm_sigma[::-1]), _traj(vp_std[::-1])], kinds)
    for p in (0.1, 0.4, 0.7):
        assert sc.frame(0, p) == sc.frame(1, p)
    assert align.marginal_kind(spec.make(base(), "ddpm,score_sde:sde=ve").runs[1].cfg) is None
    alpha = 0.6
    assert align.ve_sigma(np.array([1 - alpha ** 2]), "subvp")[0] == pytest.approx((1 - alpha ** 2) / alpha)


def test_nll_fallback_is_in_data_units(monkeypatch):
    """A family whose likelihood is not the Run's cheap report (a VAE) gets its NLL by the change of
    variables log p_data(x) = log p_norm(z) - D log(scale): with a standard normal in normalized
    coordinates that is the closed form of N(x; shift, scale^2 I)."""
    from engines.compare import measure
    from engines.run import Run
    run = Run(RunConfig(dataset="moons", family="vae", train=dict(n_data=400, seed=0)))
    monkeypatch.setattr(run.family, "log_likelihood",
                        lambda z: -0.5 * (z ** 2).sum(1) - math.log(2 * math.pi))       # N(0, I) in 2D
    value, unit = measure.nll(run, 200)
    ref = getattr(run, "reference", run.data)[:200]
    d = torch.distributions.Normal(run.shift, torch.full_like(run.shift, run.scale))
    assert unit.startswith("nats per point")
    assert value == pytest.approx(float(-d.log_prob(ref).sum(1).mean()), rel=1e-5)
    assert measure.nll_of(dict(bits_per_dim=1.5, nll_unit="bits/dim")) == (1.5, "bits/dim")
    assert measure.nll_of({}) == (None, "")
