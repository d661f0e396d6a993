"""The main window's toolbar (Play, Step, Reset, Compare, speed, stop target) and menus (File,
Lessons, View, Help), with the small handlers only they use. What an action does is the
controller's business (app/controller.py); this only lays the actions out and forwards.
"""
from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from engines.config import ConfigError

from . import presets
from .controller import SPEEDS
from .live_label import LiveLabel


class ToolbarAndMenus:
    """Mixed into MainWindow (app/shell.py): uses its ctl, datasets, docks, controls_dock,
    _default_state, set_playing(), step_once(), restart(), apply_preset(), show_error() and
    screenshot()."""

    def _build_toolbar(self):
        tb = self.addToolBar("Training")
        tb.setObjectName("toolbar")
        tb.setMovable(False)
        tb.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        st = self.style()
        SP = QtWidgets.QStyle.StandardPixmap
        self.play_action = QtGui.QAction(st.standardIcon(SP.SP_MediaPlay), "Play", self)
        self.play_action.setCheckable(True)
        self.play_action.setShortcut(QtGui.QKeySequence(QtCore.Qt.Key.Key_Space))
        self.play_action.setToolTip("Play / pause training (Space)")
        self.play_action.triggered.connect(self._user_play)
        self.step_action = QtGui.QAction(st.standardIcon(SP.SP_MediaSeekForward), "Step", self)
        self.step_action.setShortcut(QtGui.QKeySequence(QtCore.Qt.Key.Key_N))
        self.step_action.setToolTip("Train exactly one batch, then pause (N)")
        self.step_action.triggered.connect(lambda: self.step_once(1))
        self.reset_action = QtGui.QAction(st.standardIcon(SP.SP_MediaSkipBackward), "Reset", self)
        self.reset_action.setShortcut(QtGui.QKeySequence(QtCore.Qt.Key.Key_R))
        self.reset_action.setToolTip("Rewind: a fresh run from the same settings and seed (R)")
        self.reset_action.triggered.connect(lambda: self.restart("reset"))
        for a in (self.play_action, self.step_action, self.reset_action):
            tb.addAction(a)
        self.compare_action = tb.addAction("Compare with…")      # compare mode (app/compare)
        self.compare_action.setToolTip("Open the current run side by side with the same run, one thing changed")
        self.compare_action.triggered.connect(self._compare_with)
        tb.addSeparator()
        tb.addWidget(QtWidgets.QLabel(" speed "))
        self.speed = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.speed.setRange(0, len(SPEEDS) - 1)
        self.speed.setValue(len(SPEEDS) - 1)
        self.speed.setFixedWidth(170)
        self.speed.setToolTip("Training steps per frame (30 frames/s): from slow motion to full speed")
        self.speed.valueChanged.connect(self._speed_changed)
        tb.addWidget(self.speed)
        self.speed_label = LiveLabel("", widest="1 step / 20 frames")
        tb.addWidget(self.speed_label)
        tb.addSeparator()
        tb.addWidget(QtWidgets.QLabel(" stop at "))
        self.stop_kind = QtWidgets.QComboBox()
        self.stop_kind.addItem("never", None)
        self.stop_kind.addItem("loss ≤", "loss")
        self.stop_kind.addItem("energy distance ≤ (× iid)", "metric")
        self.stop_kind.setToolTip("Pause training when the loss (mean of the last 50 steps) or the sample\n"
                                  "energy distance (in multiples of the iid level) reaches a target")
        self.stop_value = QtWidgets.QLineEdit("2")
        self.stop_value.setFixedWidth(60)
        self.stop_kind.currentIndexChanged.connect(lambda *a: self.ctl.stop_changed())
        self.stop_value.editingFinished.connect(self.ctl.stop_changed)
        tb.addWidget(self.stop_kind)
        tb.addWidget(self.stop_value)
        self._speed_changed(self.speed.value())

    def _build_menus(self):
        mb = self.menuBar()
        fm = mb.addMenu("&File")
        a = fm.addAction("Open data file…")
        a.setShortcut(QtGui.QKeySequence.StandardKey.Open)
        a.setToolTip("2D points (CSV/TSV/NPY/NPZ) or images (PNG/JPEG..., .npy/.npz image arrays, MNIST IDX)")
        a.triggered.connect(self.datasets.open_dialog)
        a = self.open_folder_action = fm.addAction("Open image folder…")
        a.setToolTip("Train on a folder of PNG/JPEG images (all the same size)")
        a.triggered.connect(self.datasets.open_folder_dialog)
        a = fm.addAction("Save screenshot…")
        a.triggered.connect(self._save_screenshot_dialog)
        fm.addSeparator()
        a = fm.addAction("Quit")
        a.setShortcut(QtGui.QKeySequence.StandardKey.Quit)
        a.triggered.connect(self.close)
        lm = mb.addMenu("&Lessons")
        for name in presets.names():
            try:
                title = presets.load(name)["title"]
            except ConfigError as e:
                title = f"{name} (broken: {e})"
            act = lm.addAction(title)
            act.triggered.connect(lambda *_, n=name: self._lesson_chosen(n))
        self.view_menu = mb.addMenu("&View")
        self.view_menu.addAction(self.controls_dock.toggleViewAction())
        for key, d in self.docks.items():
            self.view_menu.addAction(d.toggleViewAction())
        self.view_menu.addSeparator()
        a = self.view_menu.addAction("Restore default layout")
        a.triggered.connect(self.restore_layout)
        hm = mb.addMenu("&Help")
        a = hm.addAction("About")
        a.triggered.connect(lambda: QtWidgets.QMessageBox.about(
            self, "About", "Generative-model playground: pick a dataset and a model family, press Play "
                           "(Space), watch it learn. Hover any setting for its formula."))

    def _compare_with(self):
        from .compare.window import compare_with_dialog
        compare_with_dialog(self)

    def _lesson_chosen(self, name):
        try:
            from .compare.window import open_preset
            if open_preset(self, name) is not None:     # a [compare] lesson opens a comparison window
                return
            self.apply_preset(name)
        except (ConfigError, ValueError) as e:
            self.show_error("Could not open the lesson", str(e))

    def restore_layout(self):
        self.restoreState(self._default_state)
        for d in self.docks.values():
            d.setVisible(True)
        self.docks["stats"].raise_()

    def _user_play(self, on):
        self.ctl.resume_play = False
        self.set_playing(on)

    def _speed_changed(self, i):
        s = SPEEDS[i]
        self.speed_label.setText("full speed" if s is None else
                                 (f"{s:g} steps/frame" if s >= 1 else f"1 step / {1 / s:g} frames"))
        self.ctl.speed_changed(s)

    def _save_screenshot_dialog(self):
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save screenshot", "playground.png", "PNG (*.png)")
        if path:
            self.screenshot(path)
