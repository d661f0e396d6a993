"""The main window end to end (offscreen): Play trains and every visible panel updates, Pause
stops, Step is exactly one step, family and dataset switch mid-run, drawings train, bad files
and bad settings are refused without losing anything, a NaN loss and a worker exception pause
the run with a message, closing mid-training stops the thread.

One window is shared by the tests of this module (they run in order) to keep the suite fast.
"""
import math

import numpy as np
import pytest
import torch
from PySide6 import QtCore, QtWidgets

from app.main_window import MainWindow


@pytest.fixture(scope="module")
def win(themed_app, wait_until):
    w = MainWindow()
    w.show()
    wait_until(lambda: w.ready(), 120, "the first run to be ready")
    yield w
    w.shutdown()
    w.close()
    w.deleteLater()


def settle(win, pump, wait_until):
    """Wait until the worker has nothing left to do (paused, no sampling job running) and its
    last messages have been drawn."""
    def idle():
        pump(0.05)
        return win.worker.idle and not win.playing
    wait_until(idle, 60, "the worker to go idle")
    pump(0.1)


def test_opens_on_moons_ddpm_ready_to_play(win):
    assert win.cfg.dataset == "moons" and win.cfg.family == "ddpm"
    assert win.info.family == "ddpm" and not win.playing
    assert win.play_action.isEnabled()
    assert (1200, 800) <= (win.width(), win.height())
    # the hyper-parameter form is generated from the family's config, tooltips name formulas
    ed = win.family.form.editors["T"]
    assert "formula" in ed.toolTip() and "abar" in ed.toolTip()


def test_play_trains_and_every_visible_panel_updates(win, pump, wait_until):
    visible = [k for k in win.panels if win.panel_visible(k)]
    assert {"field", "particles", "samples", "losses", "schedule", "stats"} <= set(visible)
    before = {k: win.panels[k].draws for k in visible}
    win.set_playing(True)
    wait_until(lambda: win.step >= 300, 120, "300 training steps")
    wait_until(lambda: all(win.panels[k].draws > before[k] for k in visible) and win.samples.step, 30,
               "every visible panel to redraw")
    loss = win.losses.terms["loss"].raw.v
    assert len(loss) >= 300 and np.isfinite(loss).all()
    assert loss[-50:].mean() < 0.8 * loss[:50].mean()           # it learns
    assert win.field.arrow_count() == win.field.resolution ** 2
    assert win.particles.particle_count() > 0
    assert win.samples.metrics.get("energy_distance_x_iid", 0) > 0


def test_pause_stops_the_step_count(win, pump, wait_until):
    win.set_playing(True)
    pump(0.3)
    qtbot_key(win, QtCore.Qt.Key.Key_Space)                 # the Space shortcut pauses
    assert not win.playing
    settle(win, pump, wait_until)
    s = win.step
    pump(1.0)
    assert win.step == s


def test_step_advances_by_exactly_one(win, pump, wait_until):
    settle(win, pump, wait_until)
    s = win.step
    win.step_once()
    wait_until(lambda: win.step == s + 1, 20, "one step")
    qtbot_key(win, QtCore.Qt.Key.Key_N)                     # the N shortcut
    wait_until(lambda: win.step == s + 2, 20, "one more step")
    pump(0.5)
    assert win.step == s + 2 and not win.playing


def test_slow_motion_and_stop_at_loss(win, pump, wait_until):
    from app.main_window import SPEEDS
    settle(win, pump, wait_until)
    win.speed.setValue(SPEEDS.index(0.25))                  # 1 step every 4 frames: ~7.5 steps/s
    s = win.step
    win.set_playing(True)
    pump(2.0)
    win.set_playing(False)
    settle(win, pump, wait_until)
    assert 3 <= win.step - s <= 30
    win.speed.setValue(len(SPEEDS) - 1)                     # full speed again
    win.stop_kind.setCurrentIndex(win.stop_kind.findData("loss"))
    win.stop_value.setText("100")                           # reached at once: the run pauses itself
    win.stop_value.editingFinished.emit()
    win.set_playing(True)
    wait_until(lambda: not win.playing, 40, "the stop at the target loss")
    win.stop_kind.setCurrentIndex(win.stop_kind.findData(None))


def test_field_follows_the_noise_level_slider(win, pump, wait_until):
    lv = win.info.level
    win.field.level.set_value(lv["hi"])
    wait_until(lambda: win.field.field is not None and win.field.field.get("level") == lv["hi"], 20,
               "the field at the largest noise level")
    big = np.linalg.norm(win.field.field["score"], axis=-1).mean()
    win.field.level.set_value(lv["lo"] + 1)
    wait_until(lambda: win.field.field.get("level") == lv["lo"] + 1, 40, "the field at a small noise level")
    small = np.linalg.norm(win.field.field["score"], axis=-1).mean()
    assert small > big             # the score of nearly clean data is steeper than that of noise


def test_analytic_dataset_overlays_the_true_score(win, pump, wait_until):
    win.datasets.select("8gaussians")
    wait_until(lambda: getattr(win.info, "analytic", None) and win.field.field is not None
               and "true_score" in win.field.field, 30, "the true score")
    pump(0.2)
    assert win.field.true_box.isVisible()
    assert len(win.field.true_arrows.xData) == 6 * win.field.resolution ** 2
    assert "relative error vs true score" in win.field.text.toPlainText()
    win.datasets.select("moons")
    wait_until(lambda: getattr(win.info, "n_data", None) == 20000 and not getattr(win.info, "analytic", None), 60, "moons again")


def test_bad_hyperparameter_shows_message_and_keeps_the_run(win, pump):
    worker, step = win.worker, win.step
    ed = win.train.form.editors["lr"]
    ed.setText("-1")
    ed.editingFinished.emit()
    assert win.worker is worker and win.step == step            # nothing restarted, nothing lost
    assert "lr" in win.errors[-1][1] and "below" in win.errors[-1][1]
    assert win.train.form.error.isVisible()
    ed.setText("0.002")
    ed.editingFinished.emit()
    assert not win.train.form.error.isVisible() and win.worker is worker


def test_malformed_file_shows_the_error_and_keeps_the_dataset(win, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n3,abc\n")
    worker, dataset = win.worker, win.dataset
    assert win.datasets.open_file(str(bad)) is False
    title, text = win.errors[-1]
    assert "bad.csv" in text and "row 3" in text                # the engine's DataFileError message
    assert win._msgbox is not None and win._msgbox.isVisible() and "row 3" in win._msgbox.text()
    assert win.dataset == dataset and win.worker is worker
    assert win.datasets.combo.currentData() == dataset
    win._msgbox.close()


def test_good_file_trains(win, tmp_path, wait_until):
    good = tmp_path / "ring.csv"
    th = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    np.savetxt(good, np.stack([np.cos(th), np.sin(th)], 1), delimiter=",", header="x,y", comments="")
    assert win.datasets.open_file(str(good))
    wait_until(lambda: getattr(win.info, "n_data", None) == 400, 60, "the file run")
    assert win.dataset == str(good)


def test_drawn_dataset_trains(win, pump, wait_until):
    win.datasets.enter_draw_mode()
    view = win.datasets.view
    pump(0.1)
    vb = win.datasets.box
    for x, y in [(-1.5, 0.0), (-1.0, 0.5), (-0.5, 1.0), (0.0, 1.2), (0.5, 1.0), (1.0, 0.5), (1.5, 0.0), (0.0, -1.0)]:
        sp = vb.mapViewToScene(QtCore.QPointF(x, y))
        vp = view.mapFromScene(sp)
        from pytestqt.qtbot import QtBot
        QtBot.mouseClick(view.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=vp)
    n = len(win.datasets.drawing)
    assert n >= 8 * 12 - 12                                     # the clicks painted points
    assert abs(win.datasets.drawing[:, 1].max() - 1.2) < 0.3
    assert win.datasets.use_drawing()
    wait_until(lambda: getattr(win.info, "n_data", None) == n, 60, "the drawing run")
    assert win.dataset == "drawing"
    win.set_playing(True)
    wait_until(lambda: win.step >= 50, 60, "training on the drawing")
    win.set_playing(False)
    assert np.isfinite(win.losses.terms["loss"].raw.v).all()


def test_switching_family_mid_run(win, pump, wait_until):
    win.datasets.select("moons")
    wait_until(lambda: getattr(win.info, "n_data", None) == 20000, 60, "moons again")
    others = [n for n, c in win.family.classes.items() if n != "ddpm" and c.trainable and "score" in c.capabilities]
    if not others:
        pytest.skip("no second trainable family is available yet")
    win.set_playing(True)
    wait_until(lambda: win.step >= 20, 60, "training before the switch")
    old = win.worker
    name = others[0]
    i = win.family.combo.findData(name)
    win.family.combo.setCurrentIndex(i)
    win.family.combo.activated.emit(i)
    wait_until(lambda: win.worker is not old, 60, "the new run (built beside the old one)")
    wait_until(lambda: getattr(win.info, "family", None) == name and win.step >= 20, 60, f"{name} training")
    wait_until(lambda: old.is_alive() is False, 20, "the old worker to stop")
    assert win.playing
    win.set_playing(False)
    i = win.family.combo.findData("ddpm")
    win.family.combo.setCurrentIndex(i)
    win.family.combo.activated.emit(i)
    wait_until(lambda: getattr(win.info, "family", None) == "ddpm", 60, "ddpm again")


def test_nan_loss_pauses_and_says_so(win, pump, wait_until):
    settle(win, pump, wait_until)
    run = win.worker.run_obj                   # paused: the thread is not using it
    n0 = len(win.errors)

    def nan_loss(batch, generator=None):
        return batch.sum() * float("nan"), {}
    run.family.loss = nan_loss
    win.set_playing(True)
    wait_until(lambda: not win.playing, 40, "the run to pause")
    assert any(t == "Training diverged" for t, _ in win.errors[n0:])
    assert "nan" in win.errors[-1][1].lower() and "learning rate" in win.errors[-1][1]
    win._msgbox.close()
    win.restart("reset")                      # Reset rewinds to a fresh, healthy run
    wait_until(lambda: win.ready(), 60, "the reset run")
    assert win.step == 0


def test_worker_exception_shows_message_and_window_survives(win, pump, wait_until):
    settle(win, pump, wait_until)
    run = win.worker.run_obj
    n0 = len(win.errors)

    def boom(n=1):
        raise RuntimeError("simulated failure inside training")
    run.train = boom
    win.set_playing(True)
    wait_until(lambda: len(win.errors) > n0, 40, "the error message")
    assert "simulated failure" in win.errors[-1][1]
    wait_until(lambda: not win.playing, 10, "the pause")
    assert win.isVisible() and win.worker.is_alive()
    win._msgbox.close()
    win.restart("reset")
    wait_until(lambda: win.ready(), 60, "the reset run")


def test_reset_gives_the_same_initialization(win, pump, wait_until):
    settle(win, pump, wait_until)
    win.step_once(3)
    wait_until(lambda: win.step == 3, 40, "3 steps")
    first = win.losses.terms["loss"].raw.v.copy()
    qtbot_key(win, QtCore.Qt.Key.Key_R)
    wait_until(lambda: win.ready() and win.step == 0, 60, "the rewound run")
    win.step_once(3)
    wait_until(lambda: win.step == 3, 40, "3 steps again")
    assert np.allclose(win.losses.terms["loss"].raw.v, first)  # same seed, same batches, same losses


def test_views_menu_restores_a_closed_panel(win, pump):
    dock = win.docks["losses"]
    dock.close()
    pump(0.1)
    assert not win.panel_visible("losses")
    act = dock.toggleViewAction()
    assert act in win.view_menu.actions()
    act.trigger()
    pump(0.1)
    assert win.panel_visible("losses")
    win.docks["field"].close()
    pump(0.1)
    assert "field" not in win.ctl.want()                             # hidden panels cost nothing
    win.restore_layout()
    pump(0.1)
    assert win.panel_visible("field") and "field" in win.ctl.want()


def test_closing_mid_training_stops_the_worker(themed_app, wait_until):
    w = MainWindow(autostart=True)
    w.show()
    wait_until(lambda: w.step > 5, 120, "training")
    worker = w.worker
    w.close()
    assert worker.is_alive() is False
    assert all(r.is_alive() is False for r in w.ctl.slot.workers())
    w.deleteLater()


def qtbot_key(win, key):
    """Press a key as the user would: shortcuts need the window to be the active one."""
    import time
    from pytestqt.qtbot import QtBot
    app = QtWidgets.QApplication.instance()
    win.raise_()
    win.activateWindow()
    end = time.perf_counter() + 3
    while QtWidgets.QApplication.activeWindow() is not win and time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)
    assert QtWidgets.QApplication.activeWindow() is win
    QtBot.keyClick(win, key)
