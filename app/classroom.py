"""The window's classroom and sharing layer, installed onto a built MainWindow:

- File: Save run / Open run (a RUN_DIR or a zipped bundle, engines/bundle.py), Export (a panel
  to PNG/SVG, losses and samples to CSV/NPY, the last particle run as GIF/MP4);
- Run: Play, Step, Reset (the toolbar's actions, so their shortcuts are listed);
- View: Lessons… (the lesson browser), Theme (system/dark/light/high contrast), zoom
  (Ctrl +/-/0: text and lines), Presentation mode (F11);
- Help: About with the version and the libraries' versions;
- dropping a RUN_DIR or a .zip bundle on the window opens it;
- with a Settings object: geometry, dock layout, theme, zoom, last lesson and last folder
  are restored now and saved when the window closes.
The window's own code stays the layout shell; this module only adds to it.
"""
from __future__ import annotations

import os
import platform
import zipfile

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from engines import messages as M

from . import theme
from .export import export_widget
from .presentation import Presentation
from .settings import THEMES, Settings

THEME_LABELS = dict(system="Follow the system", dark="Dark", light="Light", contrast="High contrast (projector)")
ZOOM_STEP = 1.15
ANIMATE_MAX = 2000              # particles drawn per exported animation frame (as the CLI's --animate)
RESTYLE_MS = 1000               # how often plots built since the last theme change are restyled
BUNDLE_FILTER = "Run bundle (*.zip);;All files (*)"


def library_versions() -> dict[str, str]:
    import numpy
    import pyqtgraph
    import PySide6
    import torch
    from PIL import __version__ as pil

    out = dict(Python=platform.python_version(), torch=torch.__version__, numpy=numpy.__version__,
               PySide6=PySide6.__version__, Qt=QtCore.qVersion(), pyqtgraph=pyqtgraph.__version__, Pillow=pil)
    for name in ("safetensors", "scipy"):
        try:
            out[name] = __import__(name).__version__
        except (ImportError, AttributeError):
            out[name] = "not installed"
    return out


def about_text() -> str:
    from engines.resources import version
    libs = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in library_versions().items())
    return (f"<h3>Generative-model playground {version()}</h3>"
            "<p>Pick a dataset and a model family, press Play (Space), watch it learn. "
            "Hover any setting for its formula. F11: presentation mode.</p>"
            f"<table>{libs}</table>")


def is_bundle(path: str) -> bool:
    """A RUN_DIR (has config.toml) or a zip file: what a drop or Open run accepts."""
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, "config.toml"))
    return os.path.isfile(path) and path.lower().endswith(".zip") and zipfile.is_zipfile(path)


class Classroom(QtCore.QObject):
    def __init__(self, win, settings: Settings | None = None):
        super().__init__(win)
        self.win = win
        self.settings = settings
        self.app = QtWidgets.QApplication.instance()
        self.choice = settings.theme if settings else "dark"
        self.zoom = settings.zoom if settings else 1.0
        self.presentation = Presentation(win, self._apply_theme)
        self.presentation.changed.connect(self._presenting)
        self._build_menus()
        win.setAcceptDrops(True)
        win.installEventFilter(self)
        theme.follow_system(self.app, self._system_scheme_changed)
        self._apply_theme(self.choice, self.zoom)
        # panels rebuild some plots (a new run, the family's views): restyle what is new
        self._restyle_timer = QtCore.QTimer(self)
        self._restyle_timer.setInterval(RESTYLE_MS)
        self._restyle_timer.timeout.connect(self._restyle_new)
        self._restyle_timer.start()
        if settings is not None:
            settings.restore_window(win)

    # ================================================================ menus
    def _menu(self, title: str) -> QtWidgets.QMenu:
        bar = self.win.menuBar()
        for m in bar.findChildren(QtWidgets.QMenu, options=QtCore.Qt.FindChildOption.FindDirectChildrenOnly):
            if m.title().replace("&", "") == title:
                return m
        return bar.addMenu(title)

    def _action(self, menu, text, slot, shortcut=None, tip=""):
        a = menu.addAction(text)
        if shortcut is not None:
            a.setShortcut(QtGui.QKeySequence(shortcut))
        if tip:
            a.setToolTip(tip)
        a.triggered.connect(lambda *_: slot())
        return a

    def _build_menus(self):
        win = self.win
        fm = self._menu("File")
        quit_action = fm.actions()[-1] if fm.actions() else None
        first = QtWidgets.QMenu(fm)          # built apart, then inserted above Quit
        self.save_action = self._action(first, "Save run…", self.save_run_dialog, QtGui.QKeySequence.StandardKey.Save,
                                        "The run as a zipped bundle: config, seed, weights, losses, metrics, view")
        self.open_action = self._action(first, "Open run…", self.open_run_dialog, "Ctrl+Shift+O",
                                        "A bundle (.zip) or a RUN_DIR folder from the window or `main.py train`")
        self._action(first, "Open run folder…", self.open_run_folder_dialog)
        em = first.addMenu("Export")
        pm = em.addMenu("Panel as PNG / SVG")
        for key, dock in win.docks.items():
            self._action(pm, f"{dock.windowTitle()}…", lambda k=key: self.export_panel_dialog(k))
        self._action(em, "Losses as CSV / NPY…", self.export_losses_dialog)
        self._action(em, "Samples as CSV / NPY…", self.export_samples_dialog)
        self._action(em, "Particle animation as GIF / MP4…", self.export_animation_dialog)
        for a in first.actions():
            fm.insertAction(quit_action, a)
        fm.insertSeparator(quit_action)
        first.setParent(fm)

        run = QtWidgets.QMenu("&Run", win.menuBar())
        for a in (win.play_action, win.step_action, win.reset_action):
            run.addAction(a)
        bar_actions = win.menuBar().actions()               # File, Lessons, View, Help: Run goes second
        win.menuBar().insertMenu(bar_actions[1] if len(bar_actions) > 1 else None, run)
        self.run_menu = run

        vm = self._menu("View")
        vm.addSeparator()
        self._action(vm, "Lessons…", self.lesson_browser, "Ctrl+L", "Every lesson by course topic")
        tm = vm.addMenu("Theme")
        group = QtGui.QActionGroup(tm)
        self.theme_actions = {}
        for name in THEMES:
            a = tm.addAction(THEME_LABELS[name])
            a.setCheckable(True)
            a.setChecked(name == self.choice)
            a.triggered.connect(lambda *_, n=name: self.set_theme(n))
            group.addAction(a)
            self.theme_actions[name] = a
        self._action(vm, "Zoom in", lambda: self.set_zoom(self.zoom * ZOOM_STEP), QtGui.QKeySequence.StandardKey.ZoomIn)
        twin = QtGui.QAction("Zoom in", win)         # Ctrl+= : Ctrl++ without Shift on most keyboards
        twin.setShortcut(QtGui.QKeySequence("Ctrl+="))
        twin.triggered.connect(lambda *_: self.set_zoom(self.zoom * ZOOM_STEP))
        win.addAction(twin)
        self._action(vm, "Zoom out", lambda: self.set_zoom(self.zoom / ZOOM_STEP), QtGui.QKeySequence.StandardKey.ZoomOut)
        self._action(vm, "Actual size", lambda: self.set_zoom(1.0), "Ctrl+0")
        self.present_action = self._action(vm, "Presentation mode", self.toggle_presentation, "F11",
                                           "Full screen, high contrast, large text, only the lesson's panels")
        self.present_action.setCheckable(True)
        # shortcuts that must work in full screen too, whatever has the focus
        for a in vm.actions():
            if not a.shortcut().isEmpty():
                win.addAction(a)

        hm = self._menu("Help")
        for a in hm.actions():
            if a.text().replace("&", "").startswith("About"):
                a.triggered.disconnect()
                a.triggered.connect(self.about)

    # ================================================================ theme and zoom
    def _apply_theme(self, choice: str, zoom: float | None = None):
        old = theme.CURRENT
        theme.apply(self.app, choice, zoom)
        theme.restyle(self.win, old)

    def _restyle_new(self):
        if not theme.is_default():
            theme.restyle(self.win, theme.CURRENT, only_new=True)

    def set_theme(self, choice: str):
        self.choice = choice
        if self.settings is not None:
            self.settings.theme = choice
        if not self.presentation.active:
            self._apply_theme(choice, self.zoom)

    def set_zoom(self, zoom: float):
        self.zoom = min(max(zoom, 0.5), 3.0)
        if self.settings is not None:
            self.settings.zoom = self.zoom
        self._apply_theme("contrast" if self.presentation.active else self.choice, self.zoom)

    def _system_scheme_changed(self):
        if self.choice == "system" and not self.presentation.active:
            self._apply_theme("system", self.zoom)

    def toggle_presentation(self):
        self.presentation.toggle(self.choice, self.zoom)

    def _presenting(self, on: bool):
        self.present_action.setChecked(on)

    # ================================================================ runs
    def view_state(self) -> dict:
        """What the window shows, saved beside the run (plain JSON)."""
        win = self.win
        state = dict(panels=[k for k, d in win.docks.items() if d.isVisible()], theme=self.choice,
                     zoom=self.zoom, lesson=(getattr(win, "preset_info", None) or {}).get("name", ""))
        level = getattr(getattr(win, "field", None), "level", None)
        if level is not None and hasattr(level, "value"):
            try:
                state["field_level"] = float(level.value())
            except (TypeError, ValueError):
                pass
        particles = getattr(win, "particles", None)
        if particles is not None and hasattr(particles, "n"):
            state["particles"] = int(particles.n.value())
        return state

    def _folder(self) -> str:
        return self.settings.last_folder if self.settings else os.path.expanduser("~")

    def _remember(self, path: str):
        if self.settings is not None:
            self.settings.last_folder = path

    def save_run_dialog(self):
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self.win, "Save run", os.path.join(self._folder(), "run.zip"),
                                                        BUNDLE_FILTER)
        if path:
            self.save_run(path if os.path.splitext(path)[1] else path + ".zip")

    def save_run(self, path: str) -> bool:
        """Ask the running session to write its run (it owns the weights: no race with training)."""
        worker = self.win.worker
        if worker is None:
            self.win.show_error("Nothing to save", "The run has not started yet.")
            return False
        self._remember(path)
        self.win.ctl.send(M.SaveRun(path, self.view_state()))
        self.win.statusBar().showMessage(f"Saving the run to {path}…", 4000)
        return True

    def open_run_dialog(self):
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self.win, "Open run", self._folder(), BUNDLE_FILTER)
        if path:
            self.open_run(path)

    def open_run_folder_dialog(self):
        path = QtWidgets.QFileDialog.getExistingDirectory(self.win, "Open run folder (RUN_DIR)", self._folder())
        if path:
            self.open_run(path)

    def open_run(self, path: str) -> bool:
        """Load a bundle (checked: names, sizes, checksums) and continue it in the window."""
        from engines.bundle import open_bundle
        from engines.config import ConfigError
        from engines.persist import RunDirError
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
        try:
            opened = open_bundle(path)
        except (RunDirError, ConfigError, ValueError, OSError) as e:
            self.win.show_error("Could not open the run", str(e))
            return False
        finally:
            QtWidgets.QApplication.restoreOverrideCursor()
        self._remember(path)
        try:
            self.win.ctl.open_run(opened.run, opened.view_state, os.path.basename(os.path.normpath(path)))
        except (ConfigError, ValueError) as e:
            self.win.show_error("Could not open the run", str(e))
            return False
        return True

    # ================================================================ exports
    def _save_name(self, title, name, filters) -> str:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self.win, title, os.path.join(self._folder(), name), filters)
        if path:
            self._remember(path)
        return path

    def export_panel_dialog(self, key: str):
        path = self._save_name(f"Export {self.win.docks[key].windowTitle()}", f"{key}.png",
                               "PNG image (*.png);;SVG drawing (*.svg)")
        if path:
            self.export_panel(key, path)

    def export_panel(self, key: str, path: str) -> bool:
        try:
            export_widget(self.win.panels[key], path)
        except (ValueError, OSError) as e:
            self.win.show_error("Could not export the panel", str(e))
            return False
        self.win.statusBar().showMessage(f"Saved {path}", 4000)
        return True

    def export_losses_dialog(self):
        path = self._save_name("Export losses", "losses.csv", "CSV (*.csv);;NumPy (*.npy)")
        if path:
            self.win.ctl.send(M.ExportLosses(path))

    def export_samples_dialog(self):
        path = self._save_name("Export samples", "samples.npy", "NumPy (*.npy);;CSV (*.csv)")
        if path:
            self.export_samples(path)

    def export_samples(self, path: str) -> bool:
        from engines.export import write_samples
        samples = getattr(self.win.samples, "samples", None)
        if samples is None:
            self.win.show_error("No samples yet", "Show the Samples panel and train a little first.")
            return False
        try:
            write_samples(path, np.asarray(samples))
        except (ValueError, OSError) as e:
            self.win.show_error("Could not export the samples", str(e))
            return False
        self.win.statusBar().showMessage(f"Saved {path}", 4000)
        return True

    def export_animation_dialog(self):
        path = self._save_name("Export particle animation", "particles.gif", "GIF (*.gif);;MP4 (*.mp4)")
        if path:
            self.export_animation(path)

    def export_animation(self, path: str) -> bool:
        """The particle panel's last sampler run, one frame per recorded step."""
        from engines.animate import Trajectory, write_animation
        traj = getattr(self.win.particles, "traj", None)
        info = self.win.info
        if traj is None or info is None:
            self.win.show_error("No particle run yet", "Press Play or Step; the Particles panel records each run.")
            return False
        frames = np.asarray(traj.frames)[:, :ANIMATE_MAX]        # Pillow draws each point of each frame
        anim = Trajectory(frames, np.asarray(traj.i), np.asarray(traj.sigma),
                          np.asarray(info.preview), tuple(info.bounds or (0.0, 1.0, 0.0, 1.0)), traj.sampler)
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
        try:
            n = write_animation(anim, path)
        except (ValueError, OSError) as e:
            self.win.show_error("Could not write the animation", str(e))
            return False
        finally:
            QtWidgets.QApplication.restoreOverrideCursor()
        self.win.statusBar().showMessage(f"Saved {path}: {n} frames", 4000)
        return True

    # ================================================================ lessons, about
    def lesson_browser(self):
        from .lesson_browser import LessonBrowser
        dlg = LessonBrowser((getattr(self.win, "preset_info", None) or {}).get("name", ""), self.win)
        dlg.chosen.connect(self.win._lesson_chosen)
        dlg.open()
        return dlg

    def about(self):
        QtWidgets.QMessageBox.about(self.win, "About", about_text())

    # ================================================================ drops, close
    def eventFilter(self, obj, ev):
        if obj is self.win:
            t = ev.type()
            if t in (QtCore.QEvent.Type.DragEnter, QtCore.QEvent.Type.DragMove):
                if self._dropped_path(ev) is not None:
                    ev.acceptProposedAction()
                    return True
            elif t == QtCore.QEvent.Type.Drop:
                path = self._dropped_path(ev)
                if path is not None:
                    ev.acceptProposedAction()
                    QtCore.QTimer.singleShot(0, lambda: self.open_run(path))
                    return True
            elif t == QtCore.QEvent.Type.Close:
                self.save_settings()
        return False

    @staticmethod
    def _dropped_path(ev) -> str | None:
        mime = ev.mimeData()
        if mime is None or not mime.hasUrls():
            return None
        urls = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
        return urls[0] if len(urls) == 1 and is_bundle(urls[0]) else None

    def save_settings(self):
        if self.settings is None:
            return
        if self.presentation.active:
            self.presentation.leave()           # remember the working layout, not the slide
        self.settings.save_window(self.win)
        name = (getattr(self.win, "preset_info", None) or {}).get("name")
        if name:
            self.settings.last_lesson = name
        self.settings.sync()


def install(win, settings: Settings | None = None, present: bool = False) -> Classroom:
    room = Classroom(win, settings)
    win.classroom = room
    if present:
        QtCore.QTimer.singleShot(0, room.toggle_presentation)
    return room
