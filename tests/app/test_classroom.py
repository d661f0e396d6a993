"""Classroom and sharing in the window (offscreen): presentation mode shows only what the lesson
names, settings survive a restart, a bundle saved by the window reopens bit for bit, a malicious
bundle dropped on the window is refused, exports write real files.

One window is shared by the tests of this module (they run in order) to keep the suite fast.
"""
import math
import os
import zipfile

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtTest, QtWidgets

from app import theme
from app.classroom import install
from app.main_window import MainWindow
from app.presentation import DEVELOPER_STATS
from app.settings import Settings


@pytest.fixture(scope="module")
def win(themed_app, wait_until):
    w = MainWindow()
    room = install(w)
    w.show()
    wait_until(lambda: w.ready(), 120, "the first run to be ready")
    yield w
    if room.presentation.active:
        room.presentation.leave()
    theme.apply(themed_app, "dark", 1.0)
    w.shutdown()
    w.close()
    w.deleteLater()


def _visible_docks(win):
    return {k for k, d in win.docks.items() if d.isVisible()}


def _group(win, title):
    return next(b for b in win.findChildren(QtWidgets.QGroupBox) if b.title() == title)


def test_presentation_mode_hides_what_the_lesson_hides(win, wait_until, pump):
    win.apply_preset("exact_annealed_vs_plain")
    wait_until(lambda: win.ready() and win.cfg.family == "exact", 120, "the exact-score lesson")
    before = _visible_docks(win)
    assert {"field", "particles", "stats"} <= before
    # the lesson's 0.8 / 0.2 split, as numbers: the particles' share per mode beside the data's
    wait_until(lambda: getattr(win.particles.traj, "mode_shares", None) is not None, 120, "a particle run")
    traj = win.particles.traj
    assert np.allclose(traj.mode_weights, [0.8, 0.2]) and traj.mode_shares.sum() == pytest.approx(1.0)
    room = win.classroom
    room.toggle_presentation()
    pump(0.2)
    assert room.presentation.active and win.windowState() & QtCore.Qt.WindowState.WindowFullScreen
    assert _visible_docks(win) == {"field", "particles"}          # panels = ["field", "particles"]
    assert not _group(win, "Training").isVisible() and not _group(win, "Model family").isVisible()
    assert _group(win, "Sampler").isVisible()                      # not hidden by the lesson
    for key in DEVELOPER_STATS:
        assert win.stats.labels[key].isHidden()
    assert theme.CURRENT.name == "contrast" and theme.line_scale() > 1.5
    assert win.lesson.font().pointSizeF() > QtWidgets.QApplication.font().pointSizeF()
    step = win.step
    QtTest.QTest.keyClick(win, QtCore.Qt.Key.Key_PageDown)        # a presenter's clicker: one step
    wait_until(lambda: win.step >= step + 1 or not win.info.trainable, 30, "one step")
    room.toggle_presentation()
    pump(0.2)
    assert not room.presentation.active and not (win.windowState() & QtCore.Qt.WindowState.WindowFullScreen)
    assert _visible_docks(win) == before
    assert _group(win, "Training").isVisible() and not win.stats.labels["fps"].isHidden()
    assert theme.CURRENT.name == "dark" and theme.line_scale() == pytest.approx(1.0)


def test_theme_switch_and_zoom_restyle_the_built_plots(win, pump):
    assert theme.resolve("system").name in ("dark", "light")           # the OS scheme, dark when unknown
    room = win.classroom
    room.set_theme("light")
    pump(0.1)
    assert win.field.plot.backgroundBrush().color().name() == QtGui.QColor(theme.PALETTES["light"].bg).name()
    room.set_zoom(1.5)
    assert QtWidgets.QApplication.font().pointSizeF() == pytest.approx(theme._BASE_FONT["pt"] * 1.5)
    room.set_zoom(1.0)
    room.set_theme("dark")
    assert win.field.plot.backgroundBrush().color().name() == QtGui.QColor(theme.PALETTES["dark"].bg).name()


def test_settings_survive_a_restart(tmp_path, themed_app):
    path = str(tmp_path / "settings.ini")
    s = Settings(path)
    assert s.theme == "system" and s.zoom == 1.0 and s.last_lesson == ""
    win = QtWidgets.QMainWindow()
    dock = QtWidgets.QDockWidget("Panel", win)
    dock.setObjectName("dock_panel")
    win.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, dock)
    assert not s.restore_window(win)                                # first start: fits the screen
    avail = win.screen().availableGeometry()
    assert win.width() <= avail.width() and win.height() <= avail.height()
    win.resize(640, 420)
    win.move(avail.topLeft() + QtCore.QPoint(10, 10))
    dock.hide()
    s.theme, s.zoom, s.last_lesson, s.last_folder = "light", 1.3, "ncsn_moons", str(tmp_path)
    s.save_window(win)
    del s
    again = Settings(path)                                           # a new process would read the file
    assert (again.theme, again.zoom, again.last_lesson, again.last_folder) == ("light", 1.3, "ncsn_moons", str(tmp_path))
    win2 = QtWidgets.QMainWindow()
    dock2 = QtWidgets.QDockWidget("Panel", win2)
    dock2.setObjectName("dock_panel")
    win2.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, dock2)
    win2.show()
    assert again.restore_window(win2)
    assert (win2.width(), win2.height()) == (640, 420) and not dock2.isVisible()
    with pytest.raises(ValueError):
        again.theme = "purple"


def test_a_malicious_bundle_dropped_on_the_window_is_refused(win, tmp_path, wait_until, pump):
    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../../outside.txt", b"x")
        zf.writestr("manifest.json", b"{}")
    run_id = win.info.run_id
    errors = len(win.errors)
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(bad))])
    pos = QtCore.QPointF(win.width() / 2, win.height() / 2)
    enter = QtGui.QDragEnterEvent(pos.toPoint(), QtCore.Qt.DropAction.CopyAction, mime,
                                  QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier)
    QtWidgets.QApplication.sendEvent(win, enter)
    assert enter.isAccepted()
    drop = QtGui.QDropEvent(pos, QtCore.Qt.DropAction.CopyAction, mime, QtCore.Qt.MouseButton.LeftButton,
                            QtCore.Qt.KeyboardModifier.NoModifier)
    QtWidgets.QApplication.sendEvent(win, drop)
    wait_until(lambda: len(win.errors) > errors, 10, "the refusal")
    title, text = win.errors[-1]
    assert title == "Could not open the run" and "climbs out" in text
    assert not (tmp_path.parent / "outside.txt").exists()
    pump(0.2)
    assert win.info.run_id == run_id                                # the run in the window goes on


def test_panel_and_samples_export_write_files(win, tmp_path, wait_until):
    room = win.classroom
    assert room.export_panel("field", str(tmp_path / "field.png"))
    assert room.export_panel("field", str(tmp_path / "field.svg"))
    assert room.export_panel("stats", str(tmp_path / "stats.png"))  # not a plot: grabbed as a widget
    img = QtGui.QImage(str(tmp_path / "field.png"))
    assert img.width() >= win.field.width() and "<svg" in (tmp_path / "field.svg").read_text()[:400]
    assert not QtGui.QImage(str(tmp_path / "stats.png")).isNull()


def test_a_run_saved_by_the_window_reopens_bit_for_bit(win, tmp_path, wait_until, pump):
    import torch

    from engines.bundle import open_bundle
    win.apply_preset("moons_ddpm")
    wait_until(lambda: win.ready() and win.cfg.family == "ddpm", 120, "the DDPM lesson")
    win.step_once(3)
    wait_until(lambda: win.step >= 3 and win.worker.idle, 60, "three steps")
    path = str(tmp_path / "run.zip")
    assert win.classroom.save_run(path)
    wait_until(lambda: os.path.exists(path), 60, "the bundle")
    live = win.worker.run_obj
    saved = open_bundle(path)
    assert saved.view_state["panels"] and saved.run.step == live.step
    a = live.sample(64, "ddim", dict(steps=4), seed=5)
    b = saved.run.sample(64, "ddim", dict(steps=4), seed=5)
    assert torch.equal(a, b)
    old_id = win.info.run_id
    assert win.classroom.open_run(path)                              # File > Open run
    wait_until(lambda: win.ready() and win.info.run_id != old_id, 60, "the opened run")
    again = win.worker.run_obj
    assert again.step == live.step and not win.playing
    assert torch.equal(again.sample(64, "ddim", dict(steps=4), seed=5), a)
    fa, fb = live.field(10, level=5), again.field(10, level=5)
    assert np.array_equal(fa["score"], fb["score"])
    # File > Export > Particle animation: the panel's last sampler run, one frame per step
    wait_until(lambda: win.particles.traj is not None and win.particles.traj.step == again.step, 120,
               "a particle run of the opened model")
    gif = str(tmp_path / "p.gif")
    assert win.classroom.export_animation(gif)
    from PIL import Image
    with Image.open(gif) as im:
        assert im.n_frames == len(win.particles.traj.frames)


@pytest.mark.parametrize("size", [2.0, 3.0, 5.4])
def test_points_keep_their_size_on_high_dpi_screens_and_across_the_splat_threshold(themed_app, size):
    """Screen area of one point (logical px^2): the same at 100 % and 200 % scale, and the same
    drawn as dots (few points) or splatted (many), within the splat's whole-pixel box."""
    from app.panels.base import Points

    def area(dpr, splat):
        xy = np.random.default_rng(0).uniform(0.05, 0.95, (100, 2))
        w = 600
        img = QtGui.QImage(int(w * dpr), int(w * dpr), QtGui.QImage.Format.Format_ARGB32_Premultiplied)
        img.setDevicePixelRatio(dpr)
        img.fill(0)
        p = QtGui.QPainter(img)
        p.setWorldTransform(QtGui.QTransform(w, 0, 0, -w, 0, w))      # data -> pixels, as a view does
        item = Points((255, 0, 0), alpha=255, size=size)
        item.SPLAT_MIN = 0 if splat else 10 ** 9
        item.setData(xy)
        item.paint(p)
        p.end()
        a = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.width(), 4)
        return (a[..., 3] > 0).sum() / len(xy) / dpr ** 2

    dots1, dots2, splat1, splat2 = area(1, False), area(2, False), area(1, True), area(2, True)
    expected = size * size * (math.pi / 4 if size > 2.5 else 1.0)               # round above 2.5 px
    for a in (dots1, dots2, splat1, splat2):
        assert 0.6 * expected < a < 1.45 * expected, (dots1, dots2, splat1, splat2, expected)
    assert 0.8 < dots2 / dots1 < 1.25


def test_the_field_caption_states_the_noising_in_one_unit():
    from app.panels.field import noising_caption
    abar = 0.9719
    text = noising_caption(10, {"kind": "t"}, (math.sqrt(abar), math.sqrt(1 - abar)))
    assert "√ᾱ_t·x₀ + √(1−ᾱ_t)·ε = 0.986·x₀ + 0.168·ε" in text and "ᾱ_t = 0.9719" in text
    assert noising_caption(0.108, {"kind": "sigma"}, (1.0, 0.108)) == "x_σ = x₀ + σ·ε,  σ = 0.108"
    assert noising_caption(None, {}, None) == ""


def test_the_particles_sigma_is_defined_per_family():
    from app.panels.particles import sigma_label
    abar = 0.2
    s = math.sqrt((1 - abar) / abar)
    assert sigma_label({"kind": "t"}, s) == "σ = √((1−ᾱ)/ᾱ) = 2"
    assert sigma_label({"kind": "sigma"}, 0.108) == "σ = 0.108"


def test_losses_axis_names_gan_averages_and_log_y_is_off_when_it_cannot_apply(themed_app, run_info):
    from app.panels.losses import LossesPanel, axis_title
    assert axis_title(["loss", "d_loss", "d_real", "d_fake"], True) == "loss, mean D(x) and D(G(z)) (log scale)"
    assert axis_title(["loss"], False) == "loss"
    panel = LossesPanel()
    panel.reset(run_info())
    panel.append(np.arange(5), {"loss": np.array([2.0, 1.0, -0.5, -1.0, -1.5])})   # a flow's NLL < 0
    panel._draw()
    assert not panel.log_box.isEnabled() and not panel.log_box.isChecked()
    panel.reset(run_info())
    panel.append(np.arange(3), {"loss": np.array([2.0, 1.0, 0.5])})
    panel._draw()
    assert panel.log_box.isEnabled() and panel.log_box.isChecked()


def test_the_window_fits_a_1366x768_screen_in_both_modes(win, pump):
    """Every panel side by side (the minimum size the docks ask for) fits a projector's laptop."""
    pump(0.1)
    need = win.minimumSizeHint()
    assert need.width() <= 1366 and need.height() <= 768, need
    room = win.classroom
    room.set_zoom(1.3)                                              # Ctrl + twice, roughly
    pump(0.1)
    need = win.minimumSizeHint()
    room.set_zoom(1.0)
    assert need.width() <= 1366 and need.height() <= 768, need


def test_a_lesson_can_hide_single_fields_by_name(win):
    from app.presentation import control_widgets
    assert win.cfg.family == "ddpm"
    editor, label = control_widgets(win, "options.T")
    assert editor is win.family.form.editors["T"] and label.text() == "T"
    assert control_widgets(win, "train.lr")[0] is win.train.form.editors["lr"]
    assert control_widgets(win, "options.no_such_field") == []
    assert [b.title() for b in control_widgets(win, "sampler")] == ["Sampler"]


def test_the_lesson_browser_lists_lessons_by_course_topic(themed_app, qtbot):
    from app import presets
    from app.lesson_browser import LessonBrowser
    dlg = LessonBrowser("ebm_moons")
    qtbot.addWidget(dlg)
    topics = [dlg.tree.topLevelItem(i).text(0) for i in range(dlg.tree.topLevelItemCount())]
    known = [t for t in topics if t in presets.TOPICS]
    assert known == [t for t in presets.TOPICS if t in known] and len(known) >= 6
    assert dlg.selected() == "ebm_moons" and "T = noise²" in dlg.formula.text()
    assert not dlg.tree.currentItem().icon(0).isNull()                  # a thumbnail of the lesson's data
    with qtbot.waitSignal(dlg.chosen, timeout=5000) as sig:
        dlg._open()
    assert sig.args == ["ebm_moons"]
