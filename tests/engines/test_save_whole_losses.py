"""Save run / Export losses write the whole run's losses, even after the Run trimmed its raw lists."""
import csv

import numpy as np

from engines import messages as M
from engines import session_persist
from engines.config import RunConfig
from engines.run import Run
from engines.session import Session


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        self.t += 0.001
        return self.t


def test_saved_losses_cover_the_whole_run_after_trimming(tmp_path, monkeypatch):
    monkeypatch.setattr(session_persist, "RAW_KEEP", 50)         # trim early: after 100 records
    cfg = RunConfig(dataset="moons", family="ddpm", options=dict(T=20, hidden=16, depth=2),
                    train=dict(n_data=300, batch=32, seed=0, warmup=0))
    s = Session(cfg, clock=FakeClock(), make_run=Run)
    assert s.build()
    for _ in range(12):                                          # 12 chunks of 20 steps, a snapshot after each
        s.run.train(20)
        s._keep_history(s.run.snapshot())
    s.run.train(7)                                               # 7 records not yet in a snapshot
    assert s.run.history_steps[0] > 1                            # the Run's own lists were trimmed
    s.handle(M.ExportLosses(str(tmp_path / "losses.csv")))
    with open(tmp_path / "losses.csv") as f:
        rows = list(csv.DictReader(f))
    steps = np.array([float(r["step"]) for r in rows])
    assert steps[0] <= 4 and steps[-1] == s.run.step == 247      # from the first records to the last
    assert np.all(np.diff(steps) > 0)
    assert np.isfinite([float(r["loss"]) for r in rows]).all()
