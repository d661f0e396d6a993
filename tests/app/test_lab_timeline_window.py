"""Issue 11 in the window (pytest-qt, offscreen): the sampler-lab panel draws one curve per
(source, sampler) from a LabResult, the oracle's dashed; in the main window training fills the
inspector's heat strip and the timeline's checkpoints, the timeline rewinds and branches, and
"Run lab" comes back with a result. Waits are on conditions with generous limits."""
import numpy as np
import pytest
from PySide6 import QtCore

from engines import lab
from engines import messages as M


def lab_message(rows, **kw):
    res = lab.LabResult(tuple(rows), 500, "8gaussians", "ddpm")
    return M.LabResult(res.curves(), res.rows, step=100, n_samples=500, dataset="8gaussians", **kw)


def row(sampler, nfe, x, source="model"):
    return lab.LabRow(sampler, nfe, x, 0.01 * nfe, source)


def test_lab_panel_draws_one_curve_per_sampler_and_the_oracle_dashed(qtbot, themed_app, run_info):
    from app.panels.lab import LabPanel
    p = LabPanel()
    qtbot.addWidget(p)
    p.reset(run_info(samplers=("euler", "heun")))
    rows = [row(s, n, x * f, src) for s, f in (("euler", 3.0), ("heun", 2.0))
            for src, x in (("model", 4.0), ("oracle", 1.5)) for n in (5, 10, 20)]
    p.on_message(M.LabProgress(1, 12, "euler", 5, 3.0))
    assert p.running and p.button.text() == "Stop lab"
    p.on_message(lab_message(rows))
    assert p.draw() and not p.running
    items = p.quality.listDataItems()
    assert len(items) == 4 and len(p.time.listDataItems()) == 4
    dashed = [i for i in items if i.opts["pen"].style() == QtCore.Qt.PenStyle.DashLine]
    assert len(dashed) == 2 and all(i.name() is None for i in dashed)       # one legend entry per sampler
    euler = next(i for i in items if i.name() == "euler")
    x, y = euler.getOriginalDataset()
    assert list(x) == [5, 10, 20] and np.allclose(y, 12.0)
    assert [label.text for _, label in p.legend.items] == ["euler", "heun"]


def test_lab_panel_refuses_a_bad_budget_list(qtbot, themed_app, run_info):
    from app.panels.lab import LabPanel
    p = LabPanel()
    qtbot.addWidget(p)
    p.reset(run_info(samplers=("euler",)))
    sent = []
    p.runRequested.connect(sent.append)
    p.nfe.setText("5, ten")
    p.button.click()
    assert not sent and "not a number" in p.status.text() and not p.running
    p.nfe.setText("20,5")
    p.button.click()
    assert sent == [M.RunLab((5, 20), 1000)] and p.running


@pytest.fixture(scope="module")
def win(themed_app, wait_until):
    from app.main_window import MainWindow
    w = MainWindow()
    w.show()
    wait_until(lambda: w.ready(), 120, "the first run to be ready")
    w.ctl.choose(dataset="8gaussians")
    wait_until(lambda: w.ready() and w.info.dataset == "8gaussians", 120, "the 8gaussians run")
    yield w
    w.shutdown()
    w.close()
    w.deleteLater()


def test_training_fills_the_heat_strip_and_the_timeline(win, wait_until):
    for key in ("inspector", "timeline"):
        win.docks[key].raise_()
    win.set_playing(True)
    insp, tl = win.panels["inspector"], win.panels["timeline"]
    wait_until(lambda: insp.strip is not None and len(insp.strip.steps) >= 2 and len(tl.steps) >= 3,
               120, "heat-strip rows and kept checkpoints")
    win.set_playing(False)
    assert tl.steps[0] == 0 and tl.branch.isEnabled()
    tl.rewindRequested.emit(tl.steps[1])
    wait_until(lambda: tl.pictures is not None, 120, "the rewound checkpoint's pictures")
    assert tl.pictures.step == tl.steps[1] and tl.pictures.samples.shape[1] == 2


def test_branch_opens_a_comparison_with_the_original(win, wait_until):
    """Branch from here opens a CompareWindow: "original (step N)" continuing a copy of the main
    run at its current step, "branch from step k" continuing the checkpoint's Run; the main
    window keeps its own run, paused."""
    import torch
    from app.compare.window import CompareWindow
    tl = win.panels["timeline"]
    old_id, main_run = win.info.run_id, win.worker.run_obj
    step = tl.steps[1]
    ckpt = win.worker.session.probe.ring.nearest(step)
    kept = win.__dict__.setdefault("_comparisons", [])
    before = len(kept)
    tl.branchRequested.emit(step)
    wait_until(lambda: len(kept) > before, 120, "the branch's comparison window")
    cw = kept[-1]
    try:
        assert isinstance(cw, CompareWindow) and len(cw.ctl.runs) == 2
        wait_until(lambda: all(rs.info is not None and rs.slot.worker is not None for rs in cw.ctl.runs),
                   120, "both compared runs ready")
        original, branched = (rs.slot.worker.run_obj for rs in cw.ctl.runs)
        n = main_run.step
        assert n > ckpt.step == step
        assert [rs.spec.label for rs in cw.ctl.runs] == [f"original (step {n:,})", f"branch from step {step:,}"]
        assert (original.step, branched.step) == (n, step)     # neither was retrained from scratch
        assert original is not main_run and branched is not main_run
        for k, v in ckpt.net.items():                           # the branch holds the checkpoint
            assert torch.equal(branched.family.state_dict()[k].cpu(), v), k
        for k, v in main_run.family.state_dict().items():       # the original holds the run now
            assert torch.equal(original.family.state_dict()[k], v), k
        # the main window keeps its run, paused
        assert win.info.run_id == old_id and win.worker.run_obj is main_run and not win.playing
    finally:
        cw.shutdown(5.0)
        cw.close()
        cw.deleteLater()
        kept.remove(cw)


def test_run_lab_in_the_window(win, wait_until):
    p = win.panels["lab"]
    win.docks["lab"].raise_()
    p.nfe.setText("5")
    p.n.setValue(200)
    p.button.click()
    wait_until(lambda: p.result is not None, 180, "the lab's result")
    assert not p.result.cancelled and {c.source for c in p.result.curves} == {"model", "oracle"}
    wait_until(lambda: len(p.quality.listDataItems()) == len(p.result.curves), 30, "the lab's curves drawn")
