"""Sampler lab (engines/lab.py): every applicable sampler at NFE budgets, scored by Run.evaluate,
cancellable mid-sampler, with a JSON/CLI contract and curves a panel can plot."""

import json

import numpy as np
import pytest
import torch

from engines import cli
from engines import lab
from engines.config import RunConfig
from engines.run import Run


@pytest.fixture(scope="module")
def oracle():
    return lab.oracle_run("8gaussians")


def test_lab_rows_and_curves_on_the_oracle(oracle):
    res = lab.run_lab(oracle, nfes=(5, 20), n_samples=500, samplers=["euler", "dpmpp_2m", "ddim", "ode_dopri5"],
                      source="oracle")
    assert not res.cancelled
    by = {(r.sampler, r.nfe): r for r in res.rows}
    for s in ("euler", "dpmpp_2m", "ddim"):
        assert (s, 5) in by and (s, 20) in by
        assert np.isfinite(by[(s, 5)].x_iid) and by[(s, 5)].seconds >= 0
        assert by[(s, 20)].x_iid < by[(s, 5)].x_iid          # more evaluations, closer to the data
    dopri = [r for r in res.rows if r.sampler == "ode_dopri5"]
    assert len(dopri) == len(lab.DOPRI5_TOLERANCES) and all(r.nfe > 5 for r in dopri)   # counted, not set
    curves = {(c.source, c.sampler): c for c in res.curves()}
    c = curves[("oracle", "euler")]
    assert list(c.nfe) == [5, 20] and c.x_iid.shape == (2,)
    assert res.best(20, "oracle").x_iid == min(r.x_iid for r in res.rows if r.nfe <= 20)
    rows = res.to_json()
    assert set(rows[0]) >= {"sampler", "nfe", "x_iid", "seconds"}


def test_a_cell_is_the_mean_of_its_per_seed_readings(oracle):
    res = lab.run_lab(oracle, nfes=(5,), n_samples=300, samplers=["euler"], seed=4, readings=3, source="oracle")
    (row,) = res.rows
    assert res.readings == 3 and len(row.x_iid_readings) == 3
    # each reading is Run.evaluate's score of the samples from one seed, recomputed here by hand
    opts = dict(json.loads(row.options))
    by_hand = [oracle.evaluate(oracle.sample(300, "euler", opts, seed=s))["energy_distance_x_iid"] for s in (4, 5, 6)]
    assert row.x_iid_readings == pytest.approx(by_hand, rel=1e-9)
    assert row.x_iid == pytest.approx(np.mean(by_hand), rel=1e-12)
    assert len(set(row.x_iid_readings)) == 3                    # independent seeds, not one draw thrice
    # the band of a mean of K: chi2_{K nu} / (K nu), narrower than one reading's chi2_nu / nu
    one = oracle.quality_reference().band()
    assert row.band == lab.mean_band(oracle.quality_reference().dof, 3)
    assert one[0] < row.band[0] < 1 < row.band[1] < one[1]
    back = json.loads(json.dumps(res.to_json()))[0]
    assert back["x_iid_readings"] == list(row.x_iid_readings) and back["band"] == list(row.band)


def _record_starting_noise(run, seen):
    """Wrap run.family.sample: record the first normal draw of its generator (what x_T is made of:
    x_T = sigma_max z for every family here) without consuming it."""
    original = run.family.sample

    def sample(n, sampler, options, generator=None, callback=None):
        peek = torch.Generator(generator.device)
        peek.set_state(generator.get_state())
        seen.append(torch.randn((n,) + tuple(run.data.shape[1:]), generator=peek))
        return original(n, sampler, options, generator=generator, callback=callback)

    run.family.sample = sample


def test_model_and_oracle_share_the_starting_noise_and_the_reference(tmp_path):
    model = Run(RunConfig(dataset="8gaussians", family="ddpm", options=dict(hidden=16, depth=1)))
    ref = lab.oracle_run("8gaussians", seed=model.cfg.train.seed)
    seen_model, seen_oracle = [], []
    _record_starting_noise(model, seen_model)
    _record_starting_noise(ref, seen_oracle)
    m = lab.run_lab(model, nfes=(5,), n_samples=200, samplers=["euler"], seed=11, readings=2)
    o = lab.run_lab(ref, nfes=(5,), n_samples=200, samplers=["euler"], seed=11, readings=2, source="oracle",
                    scorer=model)
    assert len(seen_model) == len(seen_oracle) == 2
    for zm, zo in zip(seen_model, seen_oracle):
        assert torch.equal(zm, zo)                                # identical x_T / sigma_max
    assert not torch.equal(seen_model[0], seen_model[1])         # K different seeds
    # scored against the model's reference set: the oracle's readings are the model's scorer's
    opts = dict(json.loads(o.rows[0].options))
    x = ref.sample(200, "euler", opts, seed=11)
    assert o.rows[0].x_iid_readings[0] == pytest.approx(model.evaluate(x)["energy_distance_x_iid"], rel=1e-9)
    assert m.n_samples == o.n_samples and m.rows[0].band == o.rows[0].band


def test_the_exact_oracle_at_50_nfe_reads_within_the_band_of_a_mean(oracle):
    """The ceiling: the exact score with a 50-step sampler is a perfect sampler up to a small
    discretization error, so the mean of K readings falls in the 90 % band of chi2_{K nu}/(K nu)."""
    res = lab.run_lab(oracle, nfes=(5, 50), n_samples=1000, samplers=["dpmpp_2m", "euler"], readings=4,
                      source="oracle")
    by = {(r.sampler, r.nfe): r for r in res.rows}
    for name in ("dpmpp_2m", "euler"):
        lo, hi = by[(name, 50)].band
        assert lo <= by[(name, 50)].x_iid <= hi, (name, by[(name, 50)].x_iid, (lo, hi))
        assert by[(name, 5)].x_iid > hi          # the band can fail: 5 steps' discretization error shows


def test_lab_cancels_within_a_step(oracle):
    polls = []

    def should_stop():             # a fake clock: "time is up" after 3 polls
        polls.append(1)
        return len(polls) > 3

    res = lab.run_lab(oracle, nfes=(50,), n_samples=200, samplers=["euler", "heun"], should_stop=should_stop)
    assert res.cancelled and res.rows == ()
    assert len(polls) == 4         # stopped at the first poll that said so: inside euler's 50 steps


def test_unknown_sampler_is_a_clear_error(oracle):
    with pytest.raises(ValueError, match="no applicable sampler"):
        lab.plan(oracle.family, (5,), ["nope"])


def test_lab_cli_on_the_oracle_and_on_a_run(tmp_path, capsys):
    out = tmp_path / "lab.json"
    rc = cli.main(["lab", "--exact", "8gaussians", "--nfe", "5,10", "--n", "300", "--samplers", "euler,dpmpp_2m",
                   "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())
    assert {(r["sampler"], r["nfe"]) for r in rows} == {("euler", 5), ("euler", 10), ("dpmpp_2m", 5), ("dpmpp_2m", 10)}
    captured = capsys.readouterr()
    assert json.loads(captured.out) == rows and "x_iid" in captured.err     # table on stderr, JSON on stdout
    # a (barely trained) model run on an analytic dataset: its rows plus the oracle's ceiling
    run = Run(RunConfig(dataset="8gaussians", family="flow_matching", options=dict(hidden=16, depth=1)))
    run.train(5)
    run_dir = tmp_path / "run"
    run.save(str(run_dir))
    rc = cli.main(["lab", "--run", str(run_dir), "--nfe", "5", "--n", "200", "--samplers", "euler", "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())
    assert {r["source"] for r in rows} == {"model", "oracle"}
    assert rc == 0 and all(np.isfinite(r["x_iid"]) for r in rows)
    assert cli.main(["lab", "--exact", "8gaussians", "--nfe", "0"]) != 0
