"""Sampler lab (engines/lab.py): every applicable sampler at NFE budgets, scored by Run.evaluate,
cancellable mid-sampler, with a JSON/CLI contract and curves a panel can plot."""

import json

import numpy as np
import pytest

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
