"""sweep: grid parsing, jobs shared across samplers, a grid with a failing entry run in local
processes (the rest go on, the table says why), and --ray without Ray as a one-line error."""
import csv
import json

import pytest

from engines import cli
from engines.config import ConfigError
from engines.sweep import jobs_of, parse_grid, read_table, sweep

GRID = """
[base]
dataset = "moons"
family = "ddpm"
[base.train]
n_data = 500
batch = 64
[grid]
"options.T" = [20, -3]            # T = -3 is refused by the DDPM config: that entry fails
sampler = ["ddim", "no_such_sampler"]
[sweep]
steps = 5
eval_n = 64
threads = 1
workers = 2
"""


def test_grid_parses_into_every_combination_and_shares_training_across_samplers():
    entries, settings = parse_grid(GRID)
    assert len(entries) == 4 and settings.steps == 5 and settings.workers == 2
    assert entries[1].params == (("options.T", 20), ("sampler", "no_such_sampler"))
    assert entries[1].config["options"] == {"T": 20} and entries[1].config["train"]["batch"] == 64
    assert entries[1].label == "T=20 sampler=no_such_sampler"
    jobs = jobs_of(entries)
    assert len(jobs) == 2 and [len(j.entries) for j in jobs] == [2, 2]
    assert "sampler" not in jobs[0].config


@pytest.mark.parametrize("text, message", [
    ("[grid]\nx = [1]\n[sweep]\nsteps = 1", "not a run setting"),
    ("[grid]\nsampler = []\n[sweep]\nsteps = 1", "non-empty list"),
    ("[grid]\nsampler = ['ddpm']", "steps = N or seconds"),
    ("[sweep]\nsteps = 1\nbogus = 2", "unknown key"),
    ("[extra]\n", "unknown table"),
    ("[base]\ndatset = 'moons'\n[sweep]\nsteps = 1", "unknown key 'datset'"),
    ("[grid\n", "not valid TOML"),
])
def test_bad_grid_files_are_refused_with_a_reason(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_grid(text)


def test_a_failing_entry_is_reported_and_the_rest_go_on(tmp_path):
    out = str(tmp_path / "table")
    lines = []
    doc = sweep(GRID, out, report=lines.append)
    by_label = {r["label"]: r for r in doc["runs"]}
    ok = by_label["T=20 sampler=ddim"]
    assert ok["status"] == "ok" and ok["steps"] == 5 and ok["quality_x_iid"] > 0 and ok["nfe"] > 0
    bad_sampler = by_label["T=20 sampler=no_such_sampler"]
    assert bad_sampler["status"] == "error" and "no_such_sampler" in bad_sampler["error"]
    for label in ("T=-3 sampler=ddim", "T=-3 sampler=no_such_sampler"):
        assert by_label[label]["status"] == "error" and "T" in by_label[label]["error"]
        assert by_label[label]["quality_x_iid"] is None
    assert doc["sweep"] == dict(entries=4, failed=3, settings=doc["sweep"]["settings"])
    # the same table as CSV, with the grid's parameters as columns
    with open(out + ".csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["ok", "error", "error", "error"]
    assert rows[0]["options.T"] == "20" and rows[0]["sampler"] == "ddim" and float(rows[0]["quality_x_iid"]) > 0
    with open(out + ".json") as f:
        assert json.load(f)["runs"][0]["params"] == {"options.T": 20, "sampler": "ddim"}
    table = read_table(out + ".json")                   # what the compare view's table widget shows
    assert [r.label for r in table.rows][0] == "T=20 sampler=ddim"
    assert table.rows[0].get("quality_x_iid") == pytest.approx(ok["quality_x_iid"])
    assert table.rows[1].get("quality_x_iid") is None
    assert any("2 training runs in 2 processes" in line for line in lines)


def test_ray_without_ray_is_one_clear_line(tmp_path, capsys):
    try:
        import ray  # noqa: F401
        pytest.skip("ray is installed here")
    except ImportError:
        pass
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    rc = cli.main(["sweep", str(grid), "--ray", "127.0.0.1:6379"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0
    assert err.startswith("error: --ray needs Ray") and ".[sweep]" in err
    assert not (tmp_path / "grid.csv").exists()
