"""Every registered family in the window (offscreen), one after the other in one window while
it keeps playing: the switch happens mid-run, the new family trains (its step count grows;
`exact` has nothing to train), the visible panels draw what the family declares (arrows for a
score, a heat map for an energy / density / discriminator, a "no field" note otherwise, its
own Family views, particles and samples), and no error reaches the window's error channel
(`win.errors`, which every message box and bad-setting notice goes through). Then DDPM on
digits and on shapes draw image grids of samples, with FID / IS for the digits.

Families run on moons, except rbm (binary images only: digits_binary) and exact (needs an
analytic mixture: 8gaussians). Every wait is for a condition, never a fixed dwell, so a
slow machine only makes it longer.
"""
import time

import numpy as np
import pytest

from app.main_window import MainWindow
from engines import families

DATASET = {"rbm": "digits_binary", "exact": "8gaussians"}
# families that draw pictures of their own on these datasets (once they have trained a little)
VIEWS = {"flow_matching", "vae", "gan", "wgan_gp", "planar_flow", "realnvp", "maf", "ebm", "autoregressive", "rbm",
         "discrete_diffusion", "gmm_em", "exact"}
NEEDS_OWN_DATA = {"rbm", "exact"}      # these can't run on the next family's dataset for a moment
SCALAR_KEYS = ("energy", "log_density", "discriminator")


@pytest.fixture(scope="module")
def win(themed_app, wait_until):
    w = MainWindow()
    w.show()
    wait_until(lambda: w.ready(), 120, "the first run to be ready")
    w.samples.every.setValue(0.5)           # fresh samples twice a second: the test waits less
    w.particles.duration.setCurrentIndex(0)  # 1 s playbacks
    yield w
    w.shutdown()
    w.close()
    w.deleteLater()


def _pick_family(win, name):
    i = win.family.combo.findData(name)
    win.family.combo.setCurrentIndex(i)
    win.family.combo.activated.emit(i)              # as a user's choice in the picker


def _pick_dataset(win, name):
    i = win.datasets.combo.findData(name)
    win.datasets.combo.setCurrentIndex(i)
    win.datasets.combo.activated.emit(i)


def _switch(win, family, dataset):
    """Change family and dataset the way a user would, in the order that never asks a family
    for data it refuses (rbm: binary images only; exact: analytic mixtures only)."""
    if win.dataset != dataset and win.family.current not in NEEDS_OWN_DATA:
        _pick_dataset(win, dataset)
    if win.family.current != family:
        _pick_family(win, family)
    if win.dataset != dataset:
        _pick_dataset(win, dataset)


def _check_field(win, caps):
    fp = win.field
    if getattr(win.info, "is_image", None):
        assert fp.data_img.isVisible() and fp.note.isVisible()      # training images + a note
        return
    f = fp.field
    assert f is not None and "xs" in f
    scalar = [k for k in SCALAR_KEYS if k in f]
    if "score" in f:
        assert fp.arrow_count() == fp.grid_resolution() ** 2
    if scalar:
        assert fp.img.isVisible() and fp.cbar.isVisible()           # a heat map with its colour bar
        assert fp.bg.currentData() in scalar                        # the family's own map by default
    if "score" not in f and not scalar:
        assert fp.no_field and fp.note.isVisible() and "no field" in fp.note.text()
    else:
        assert not fp.no_field


def test_every_family_trains_and_draws_in_the_window(win, pump, wait_until):
    names = families.names()
    assert set(names) <= set(win.family.classes), f"families that don't import: {win.family.broken}"
    win.set_playing(True)
    seen_views = {}
    t_start = time.perf_counter()
    for name in names:
        dataset = DATASET.get(name, "moons")
        old = win.worker
        t0 = time.perf_counter()
        changed = win.family.current != name or win.dataset != dataset
        _switch(win, name, dataset)
        if changed:                                                  # a fresh run, built beside the old one
            wait_until(lambda: win.worker is not old, 60, f"the {name} run to replace the old one")
        wait_until(lambda: getattr(win.info, "family", None) == name and win.worker.cfg.dataset == dataset, 60,
                   f"{name} on {dataset} to be ready")
        cls = win.family.classes[name]
        draws = {k: win.panels[k].draws for k in win.panels}
        if cls.trainable:
            assert win.playing and win.play_action.isEnabled()
            wait_until(lambda: win.step >= 10, 40, f"{name} to train")
        else:
            assert not win.play_action.isEnabled() and win.step == 0
        wait_until(lambda: win.samples.samples is not None, 40, f"samples of {name}")
        wait_until(lambda: win.particles.traj is not None, 40, f"particles of {name}")
        if not getattr(win.info, "is_image", None):
            wait_until(lambda: win.field.field is not None, 20, f"the field of {name}")
        # the family's own pictures (brought to the front once they exist)
        if name in VIEWS:
            wait_until(lambda: win.panel_visible("views") and win.views.views
                       and set(win.views.plots) == set(win.views.views), 20, f"the Family views of {name}")
        run_views = dict(win.views.views or {}) if name in VIEWS else {}
        pump(0.3)
        assert win.errors == [], f"{name}: {win.errors}"
        assert not win.statusBar().currentMessage().startswith("⚠")
        if cls.trainable:
            assert win.step >= 10
            assert np.isfinite(win.losses.terms["loss"].raw.v).all()
            assert win.losses.draws > draws["losses"]
        else:
            pump(0.5)
            assert win.step == 0                                     # nothing to train: stays at 0
        _check_field(win, cls.capabilities)
        assert win.samples.draws > draws["samples"] and win.particles.draws > draws["particles"]
        if getattr(win.info, "is_image", None):
            assert win.samples.img.isVisible() and win.samples.img.image is not None
        else:
            assert win.samples.points.count() > 0
        if run_views:
            assert win.views.draws > draws["views"] and win.views.note.text().count("unknown") == 0
            assert not win.views.message.isVisible()
            seen_views[name] = sorted(run_views)
            if any("n_layers" in v for v in run_views.values()):   # flows: the layer slider
                assert win.views.layer_box.isVisible() and "layer" in win.views.want()["views"]
        elif win.panel_visible("views"):                              # shown, it says why it is empty
            assert win.views.message.isVisible() and "no pictures" in win.views.message.text()
        # it keeps training and the panels keep following (waited for, however slow the machine)
        step, drawn = win.step, {k: win.panels[k].draws for k in ("losses", "field", "samples")}
        if cls.trainable:
            img = getattr(win.info, "is_image", None)
            wait_until(lambda: win.step > step and win.losses.draws > drawn["losses"]
                       and (img or win.field.draws > drawn["field"]), 60, f"{name} to keep training and drawing")
        assert win.errors == [], f"{name}: {win.errors}"
        print(f"{name:20s} on {dataset:14s} {time.perf_counter() - t0:4.1f} s  step {win.step:5d}  "
              f"views {sorted(run_views)}")
    win.set_playing(False)
    assert VIEWS & set(names) <= set(seen_views), seen_views


def test_flow_layer_slider_asks_for_that_layer(win, pump, wait_until):
    _switch(win, "realnvp", "moons")
    wait_until(lambda: getattr(win.info, "family", None) == "realnvp", 60, "realnvp")
    win.step_once(20)
    wait_until(lambda: win.views.layer_box.isVisible(), 30, "the layer slider")
    K = win.views.layer.maximum()
    assert K == win.worker.run_obj.family.cfg.n_layers
    win.views.layer.setValue(2)
    wait_until(lambda: (win.views.views or {}).get("layers", {}).get("layer") == 2, 20, "the view after 2 layers")
    assert "2 of" in win.views.views["layers"]["title"]
    assert win.errors == []


def test_noise_level_slider_is_shared_by_field_and_views(win, pump, wait_until):
    _switch(win, "discrete_diffusion", "moons")
    wait_until(lambda: getattr(win.info, "family", None) == "discrete_diffusion", 60, "discrete diffusion")
    win.step_once(30)
    wait_until(lambda: win.views.level.isVisible() and "forward" in (win.views.views or {}), 30, "the forward view")
    lv = win.info.level
    win.views.level.set_value(lv["hi"])
    assert win.field.level.value() == lv["hi"]                      # one level for both panels
    # the engine's index hi = T - 1 is the papers' t = T (level["display_offset"])
    wait_until(lambda: f"t = {lv['hi'] + lv['display_offset']} " in win.views.views["forward"]["title"], 20,
               "the view at the last step")
    win.field.level.set_value(lv["lo"])
    assert win.views.level.value() == lv["lo"]
    assert win.field.no_field and "no field" in win.field.note.text()   # D3PM has no field on the plane
    assert win.errors == []


def test_ddpm_on_digits_shows_images_with_fid_and_is(win, pump, wait_until):
    win.apply_preset("ddpm_digits")
    wait_until(lambda: getattr(win.info, "is_image", None) and getattr(win.info, "family", None) == "ddpm", 60, "ddpm on digits")
    assert win.info.data_shape == (1, 8, 8)
    win.set_playing(True)
    wait_until(lambda: win.step >= 3 and win.samples.samples is not None
               and "fid" in win.samples.metrics, 90, "digit samples with metrics")
    pump(0.6)                                                      # the stats panel refreshes at 2 Hz
    win.set_playing(False)
    s = win.samples
    assert s.samples.ndim == 4 and s.samples.shape[1:] == (1, 8, 8)
    assert s.img.isVisible() and s.img.image is not None and s.img.image.shape[0] > 8 * 4
    text = s.text.toPlainText()
    assert "FID" in text and "Inception Score" in text and "real images" in text
    assert 1.0 <= s.metrics["inception_score"] <= 10.0 and s.metrics["fid"] > 0
    assert "FID" in win.stats.values.get("fid", "")
    # no 2D field for images: the Field panel shows training images and says why
    assert win.field.data_img.isVisible() and "no 2D field" in win.field.note.text()
    # DDPM's own image views: the reverse chain, the forward noising at the slider's t, |score|
    wait_until(lambda: {"trajectory", "forward", "score_magnitude"} <= set(win.views.plots), 30, "ddpm image views")
    assert win.panel_visible("views") and win.views.level.isVisible()
    assert win.particles.img.isVisible()
    assert win.errors == []


def test_ddpm_on_shapes_shows_an_image_grid(win, pump, wait_until):
    win.apply_preset("ddpm_shapes")
    wait_until(lambda: getattr(win.info, "is_image", None) and getattr(win.info, "data_shape", None) == (1, 16, 16), 60, "ddpm on shapes")
    win.set_playing(True)
    wait_until(lambda: win.step >= 2 and win.samples.samples is not None, 90, "shape samples")
    win.set_playing(False)
    s = win.samples
    assert s.samples.shape[1:] == (1, 16, 16)
    n = len(s.samples[:64])
    cols = int(np.ceil(np.sqrt(n)))
    assert s.img.image.shape[:2] == (int(np.ceil(n / cols)) * 17 + 1, cols * 17 + 1)   # the grid of 16x16 images
    assert "fid" not in s.metrics                                  # the digit metrics don't apply to shapes
    assert "energy distance" in s.text.toPlainText()
    assert win.errors == []
