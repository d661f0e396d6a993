"""The parts of the window on their own: generated forms, the family-views renderer (every
kind), the fast drawing helpers, presets, family discovery with a broken family, and the
worker thread without a window."""
import time

import numpy as np
import pytest
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from engines import families
from engines.config import RunConfig, TrainConfig, describe
from engines.families.ddpm import DDPMConfig
from engines.families.options import DDIMOptions


def test_form_is_generated_from_the_config(themed_app):
    from app.controls.form import ConfigForm
    f = ConfigForm(DDPMConfig)
    spec = describe(DDPMConfig)
    assert list(f.editors) == [d["name"] for d in spec]
    assert isinstance(f.editors["schedule"], QtWidgets.QComboBox)          # choices
    assert isinstance(f.editors["T"], QtWidgets.QSpinBox)                  # int with a range
    assert f.editors["T"].maximum() == 5000 and f.editors["T"].minimum() == 2
    assert isinstance(f.editors["scale_betas"], QtWidgets.QCheckBox)       # bool
    assert "Nichol" in f.editors["schedule"].toolTip()                     # the formula
    got = []
    f.changed.connect(lambda n, v: got.append((n, v)))
    f.editors["T"].setValue(50)
    assert got == [("T", 50)] and f.values()["T"] == 50
    # a cross-field rule from validate(): beta_start must be below beta_end
    f.editors["schedule"].setCurrentIndex(f.editors["schedule"].findData("linear"))
    f.editors["beta_start"].setText("0.5")
    f.editors["beta_start"].editingFinished.emit()
    assert "beta_start" in f.error.text() and f.values()["beta_start"] == 1e-4   # the last good value stays
    f.editors["beta_start"].setText("abc")
    f.editors["beta_start"].editingFinished.emit()
    assert "number" in f.error.text()


def test_form_greys_out_fields_the_values_ignore_and_shows_the_betas_used(themed_app):
    """Issue 8 item 10: beta_start/end do nothing under cosine, sigma_min/max nothing under the VP
    SDE; the form says which betas a linear schedule actually trains on."""
    from app.controls.form import ConfigForm
    from engines.families.score_sde import ScoreSDEConfig
    f = ConfigForm(DDPMConfig)                                               # default: cosine
    assert not f.editors["beta_start"].isEnabled() and not f.editors["beta_end"].isEnabled()
    assert f.editors["T"].isEnabled() and "abar_T" in f.note.text()
    f.editors["schedule"].setCurrentIndex(f.editors["schedule"].findData("linear"))
    assert f.editors["beta_start"].isEnabled() and f.editors["scale_betas"].isEnabled()
    f.editors["T"].setValue(50)
    assert "0.0001 .. 0.02" in f.note.text()                                 # the betas typed are used
    f.editors["scale_betas"].setChecked(True)
    assert "0.002 .. 0.4" in f.note.text()                                   # x 1000/T, said on screen
    s = ConfigForm(ScoreSDEConfig)                                           # vp
    assert not s.editors["sigma_min"].isEnabled() and s.editors["beta_min"].isEnabled()
    s.editors["sde"].setCurrentIndex(s.editors["sde"].findData("ve"))
    assert s.editors["sigma_max"].isEnabled() and not s.editors["beta_max"].isEnabled()


def test_sampler_picker_lists_the_family_samplers(themed_app):
    from app.controls.family import SamplerPicker
    from engines.families.ddpm import DDPM
    p = SamplerPicker()
    p.set_family(DDPM)
    assert [p.combo.itemData(i) for i in range(p.combo.count())] == list(DDPM.samplers)
    got = []
    p.samplerChanged.connect(lambda n, o: got.append((n, o)))
    i = p.combo.findData("ddim")
    p.combo.setCurrentIndex(i)
    p.combo.activated.emit(i)
    assert got and got[-1][0] == "ddim" and got[-1][1]["steps"] == DDIMOptions().steps
    assert list(p.form.editors) == [d["name"] for d in describe(DDIMOptions)]


def test_a_broken_family_is_listed_but_disabled(themed_app, monkeypatch):
    monkeypatch.setitem(families.REGISTRY, "broken_family", "no_such_module:Nothing")
    from app.controls.family import FamilyPicker, discover
    ok, bad = discover()
    assert "ddpm" in ok and "broken_family" in bad
    p = FamilyPicker()
    i = p.combo.findData("broken_family")
    assert i >= 0 and not p.combo.model().item(i).isEnabled()
    assert "No module" in p.combo.model().item(i).toolTip()
    with pytest.raises(ValueError, match="not available"):
        p.set_family("broken_family")


def _plot():
    w = pg.PlotWidget()
    return w, w.getPlotItem()


@pytest.mark.parametrize("view", [
    dict(kind="scatter", x=np.random.randn(300, 2), color=np.arange(300.0), space="data"),
    dict(kind="scatter", x=np.random.randn(30000, 2)),
    dict(kind="polylines", lines=[np.random.randn(20, 2) for _ in range(5)]),
    dict(kind="ellipses", centers=np.zeros((3, 2)), covs=np.stack([np.eye(2)] * 3), weights=np.ones(3)),
    dict(kind="images", images=np.random.uniform(-1, 1, (10, 1, 8, 8)), nrow=5),
    dict(kind="images", images=np.random.uniform(-1, 1, (4, 3, 8, 8))),
    dict(kind="heatmap", xs=np.linspace(-1, 1, 16), ys=np.linspace(-1, 1, 16), z=np.random.rand(16, 16)),
    dict(kind="curves", curves={"a": (np.arange(5), np.arange(5)), "b": (np.arange(5), -np.arange(5))}),
    dict(kind="arrows", x=np.random.randn(50, 2), v=np.random.randn(50, 2)),
])
def test_every_view_kind_draws(themed_app, view):
    from app.panels.views import draw_view
    w, p = _plot()
    draw_view(p, dict(view, title="t"), data_preview=np.random.randn(100, 2))
    assert len(p.items) >= 1
    w.resize(300, 300)
    img = w.grab().toImage()
    assert img.width() == 300


def test_views_panel_survives_a_bad_view(themed_app, run_info):
    from app.panels.views import ViewsPanel
    from engines.messages import Snapshot
    v = ViewsPanel()
    v.reset(run_info())
    snap = Snapshot(step=1, wall_time=0, loss_steps=np.zeros(0), losses={}, lr=1e-3, steps_per_s=0,
                    views=dict(ok=dict(kind="curves", curves={"c": ([0, 1], [1, 0])}), bad=dict(kind="nope")))
    v.on_snapshot(snap)
    assert v.draw()
    assert set(v.plots) == {"ok", "bad"} and "unknown view kind" in v.note.text()


def test_points_splat_matches_draw_points_coverage(themed_app):
    """Above SPLAT_MIN points the Points item rasterizes itself with numpy; it must colour
    about the same pixels as QPainter.drawPoints does for the same points."""
    from app.panels.base import Points
    rng = np.random.default_rng(0)
    xy = rng.normal(0, 0.4, (3000, 2))
    covered = []
    for splat_min in (0, 10 ** 9):                         # splat, then drawPoints
        w, p = _plot()
        w.resize(200, 200)
        p.hideAxis("left")
        p.hideAxis("bottom")
        pts = Points(size=2)
        pts.SPLAT_MIN = splat_min
        pts.setData(xy)
        p.addItem(pts)
        p.setRange(xRange=(-1, 1), yRange=(-1, 1), padding=0)
        img = w.grab().toImage().convertToFormat(w.grab().toImage().Format.Format_RGB32)
        a = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.width(), 4)
        covered.append((a[..., 2].astype(int) > 150).mean())      # orange-ish pixels
    assert covered[0] > 0.1 and covered[1] > 0.1
    assert 0.6 < covered[0] / covered[1] < 1.6


def test_arrow_segments_geometry():
    from app.panels.base import arrow_segments, scale_arrows
    xs, ys = arrow_segments([0.0], [0.0], [2.0], [0.0])
    assert xs.shape == (6,)
    assert (xs[0], xs[1]) == (-1.0, 1.0) and ys[0] == ys[1] == 0          # centred shaft
    assert xs[3] < 1 and xs[5] < 1 and ys[3] * ys[5] < 0                   # two head strokes
    v = scale_arrows(np.array([[10.0, 0], [1.0, 0], [0, 0]]), cell=1.0, mode="unit")
    assert np.allclose(np.linalg.norm(v[:2], axis=1), 0.8)


def test_presets_load_and_validate():
    from app import presets
    names = presets.names()
    assert {"moons_ddpm", "ncsn_gmm", "score_sde_vp", "exact_annealed_vs_plain"} <= set(names)
    ok, _ = __import__("app.controls.family", fromlist=["discover"]).discover()
    from engines.config import build
    for n in names:
        p = presets.load(n)
        cfg = p["cfg"]
        assert p["title"] and p["lesson"]
        if cfg.family in ok:
            fam = ok[cfg.family]
            build(fam.Config, cfg.options)
            if cfg.sampler:
                build(fam.samplers[cfg.sampler], cfg.sampler_options)


def test_worker_thread_alone(themed_app):
    """The bridge without a window: typed messages arrive, step is exact, a trajectory comes
    back, stop() ends the thread within a second."""
    from app.worker import Worker
    from engines import messages as M
    w = Worker(RunConfig(train=TrainConfig(threads=1, n_data=2000)),
               want=dict(field=dict(resolution=8, level=None)))
    w.start()
    msgs = []
    end = time.perf_counter() + 30
    while not any(isinstance(m, M.RunInfo) for m in msgs) and time.perf_counter() < end:
        msgs += w.drain()
        time.sleep(0.01)
    ready = next(m for m in msgs if isinstance(m, M.RunInfo))
    assert ready.family == "ddpm" and ready.parameters > 1000
    w.send(M.Step(5))
    w.send(M.Particles(64))
    end = time.perf_counter() + 30
    while time.perf_counter() < end:
        msgs += w.drain()
        if any(isinstance(m, M.Trajectory) for m in msgs) and any(isinstance(m, M.Snapshot) and m.step == 5 for m in msgs):
            break
        time.sleep(0.01)
    snaps = [m for m in msgs if isinstance(m, M.Snapshot)]
    assert sum(len(s.loss_steps) for s in snaps) == 5                 # every loss record arrives once
    assert any(s.field is not None and s.field["score"].shape == (8, 8, 2) for s in snaps)
    traj = [m for m in msgs if isinstance(m, M.Trajectory)][0]
    assert traj.frames.shape[1:] == (64, 2) and traj.nfe == traj.steps == 100
    w.stop()
    assert w.join(5) and w.is_alive() is False
