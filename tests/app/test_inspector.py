"""The schedule inspector, checkpoint timeline and score-error panels, each alone (pytest-qt,
offscreen), fed by the engine functions they draw."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from engines import data as D
from engines import schedules as sch
from engines.data import GaussianMixture
from engines.inspector import InspectorExtras
from engines.loss_bins import LossBins
from engines.score_error import fisher_by_noise_level


def ddpm_schedule(T, beta_start, beta_end):
    """What DDPM.schedule() publishes in RunInfo.schedule."""
    b = sch.betas("linear", T, beta_start, beta_end)
    abar = sch.alphas_cumprod(b)
    t = np.arange(T)
    return dict(x_label="step t", beta=(t, b.numpy()), alpha_bar=(t, abar.numpy()),
                log_snr=(t, sch.log_snr(abar).numpy()))


@pytest.fixture(scope="module")
def moons():
    return D.load("moons", 2000, seed=0).numpy()


@pytest.fixture
def inspector(qtbot, themed_app):
    from app.panels.schedule_inspector import ScheduleInspectorPanel
    p = ScheduleInspectorPanel()
    qtbot.addWidget(p)
    p.resize(1200, 850)
    return p


def test_bad_schedule_shows_the_prior_mismatch_and_its_fix(inspector, run_info, moons):
    bad = ddpm_schedule(50, 1e-4, 0.02)                        # unscaled: alpha-bar_T = 0.60
    inspector.reset(run_info(family="ddpm", schedule=bad, preview=moons))
    assert inspector.draw()
    text = inspector.warnings.text()
    assert "prior mismatch" in text and "0.603" in text and "KL(q(x_T)" in text and "Fix:" in text
    assert [w.code for w in inspector.report.warnings] == ["prior_mismatch"]
    # the run's curve is drawn on every plot, highlighted (thicker than the standard schedules)
    items = inspector.curve_plots["alpha_bar"].listDataItems()
    widths = sorted(i.opts["pen"].widthF() for i in items)
    assert len(items) == 1 + len(inspector.report.curves) and widths[-1] > 2 * widths[0]
    # forward process at t = 1: x_T still holds 0.78 x_0 under the run's schedule
    assert inspector.t == 1.0 and "0.78 x0" in inspector.fwd_a.getPlotItem().titleLabel.text
    inspector.slider.setValue(500)
    assert inspector.t == 0.5 and "0.78 x0" not in inspector.fwd_a.getPlotItem().titleLabel.text
    inspector.show()
    assert not inspector.grab().toImage().isNull()


def test_good_schedule_raises_no_warning(inspector, run_info, moons):
    inspector.reset(run_info(family="ddpm", schedule=ddpm_schedule(1000, 1e-4, 0.02), preview=moons))
    inspector.draw()
    assert inspector.report.warnings == () and "no warning" in inspector.warnings.text()


def test_custom_schedules_are_checked_and_added(inspector, run_info, moons):
    inspector.reset(run_info(family="ddpm", schedule=ddpm_schedule(100, 1e-4, 0.02), preview=moons))
    assert inspector.draw()
    n = inspector.other.count()
    inspector.text.setText("__import__('os')")
    inspector.add.click()
    assert "not allowed" in inspector.custom_error.text() and inspector.other.count() == n
    inspector.text.setText("exp(-8 * t ** 2)")
    inspector.add.click()
    assert inspector.custom_error.text() == "" and inspector.other.count() == n + 1
    assert inspector.other.currentText() == "alpha_bar = exp(-8 * t ** 2)"
    inspector.kind.setCurrentText("points")
    inspector.quantity.setCurrentText("sigma")
    inspector.text.setText("0:0.01, 1:20")
    inspector.add.click()
    assert inspector.other.count() == n + 2 and inspector.draw()
    dlg = inspector.edit_dialog()                               # the editing dialog: list and remove
    assert [dlg.list.item(i).text() for i in range(dlg.list.count())] == ["sigma points", "alpha_bar = exp(-8 * t ** 2)"]
    dlg.list.setCurrentRow(0)
    dlg.remove.click()
    assert dlg.list.count() == 1 and inspector.other.count() == n + 1 and len(inspector.custom) == 1
    assert inspector.draw() and len(inspector._curve_items) == 1 + n + 1     # customs + standards + the run


def test_loss_strip_is_drawn_from_the_bins(inspector, run_info, moons):
    inspector.reset(run_info(family="ddpm", schedule=ddpm_schedule(100, 1e-4, 0.02), preview=moons))
    bins = LossBins(n_bins=16, row_steps=1)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        t = torch.rand(256, generator=g)
        bins.add(t, 1.0 / (t + 0.05))                           # a loss that falls with t
    inspector.on_message(InspectorExtras(5, bins.strip(), None, ()))
    inspector.draw()
    img = inspector.strip_image.image
    assert img.shape == (5, 16) and img[:, 0].mean() > img[:, -1].mean()
    assert not inspector.strip_note.isVisible()
    inspector.strip_relative.setChecked(True)                   # log10(loss / first row): 0 on the first row
    assert np.allclose(inspector.strip_image.image[0], 0.0)


def test_image_runs_get_curves_without_warnings(inspector, run_info):
    info = run_info(family="ddpm", schedule=ddpm_schedule(50, 1e-4, 0.02), is_image=True,
                    preview=np.zeros((4, 1, 8, 8)), data_shape=(1, 8, 8), bounds=None)
    inspector.reset(info)
    assert inspector.draw() and inspector.report.warnings == () and "point data" in inspector.warnings.text()


def test_timeline_rewinds_and_branches(qtbot, themed_app):
    from app.panels.timeline import TimelinePanel
    from engines.checkpoints import CheckpointRing, branch, pictures_at
    from engines.config import RunConfig
    from engines.run import Run
    run = Run(RunConfig(dataset="moons", family="ddpm", options=dict(T=20),
                        train=dict(n_data=500, batch=64, threads=1)))
    ring = CheckpointRing(max_count=6)
    for _ in range(40):
        ring.offer(run)
        run.train(1)
    panel = TimelinePanel()
    qtbot.addWidget(panel)
    panel.reset(SimpleNamespace(bounds=run.bounds()))
    panel.rewindRequested.connect(lambda s: panel.set_pictures(pictures_at(run, ring.nearest(s), 8, n=100, frames=4)))
    panel.on_message(InspectorExtras(run.step, None, None, tuple(ring.steps)))
    assert panel.current_step() == ring.steps[-1] and panel.branch.isEnabled()
    with qtbot.waitSignal(panel.rewindRequested, timeout=10000) as sig:
        panel.slider.setValue(1)
    assert sig.args == [ring.steps[1]] and panel.pictures.step == ring.steps[1]
    assert panel.draw() and len(panel.samples.data) == 100 and panel.frames.maximum() == 3
    with qtbot.waitSignal(panel.branchRequested, timeout=10000) as sig:
        panel.branch.click()
    new = branch(run, ring.nearest(sig.args[0]))
    assert new.step == ring.steps[1]
    for v, w in zip(new.family.net.state_dict().values(), ring.items[1].net.values()):
        assert torch.equal(v, w)


def test_score_error_panel_draws_the_curves(qtbot, themed_app, run_info):
    from app.panels.score_error import ScoreErrorPanel
    data = GaussianMixture([1.0], [[0.0, 0.0]], 0.3)
    model = GaussianMixture([1.0], [[0.5, 0.0]], 0.3)
    fam = SimpleNamespace(process=SimpleNamespace(sigma_range=lambda: (0.05, 5.0)),
                          score=lambda x, s: model.score(x, s[0]))
    panel = ScoreErrorPanel()
    qtbot.addWidget(panel)
    panel.reset(run_info(analytic=True))
    assert panel.note.text() == ""
    for step in (10, 20, 20):                                   # the same step twice replaces, not adds
        panel.on_message(InspectorExtras(step, None, fisher_by_noise_level(fam, data, 6, 128, step=step), ()))
    assert len(panel.curves) == 2 and panel.draw()
    assert len(panel.abs_plot.getPlotItem().listDataItems()) == 2
    assert "worst at sigma = 0.05" in panel.rel_plot.getPlotItem().titleLabel.text
    panel.reset(run_info(analytic=False))
    assert "analytic datasets" in panel.note.text()


def test_registry_has_one_row_per_new_panel():
    from app.panels import registry
    for key in ("inspector", "timeline", "score_error"):
        spec = registry.spec(key)
        assert InspectorExtras in spec.consumes
