"""Dataset picker: named datasets (engines.data.names()) with a live preview, a draw mode in
which the user paints the training points with the mouse, and user files (CSV/TSV/NPY/NPZ
via engines.data.files.load_points_file, whose DataFileError message is shown as is)."""
from __future__ import annotations

import os

import numpy as np
import pyqtgraph as pg
import torch
from PySide6 import QtCore, QtWidgets

from engines import data as D
from engines.data.files import EXTENSIONS, DataFileError, load_points_file

from .. import theme
from ..panels.base import Points, show_image_grid
from .form import combo

DRAW_RANGE = 3.0          # the canvas is [-3, 3]^2
DRAWING = "drawing"
PREVIEW_N = 1500


class DrawBox(pg.ViewBox):
    """A ViewBox that turns mouse presses and drags into paint strokes instead of panning."""
    stroke = QtCore.Signal(float, float)

    def __init__(self):
        super().__init__(enableMouse=False, enableMenu=False)
        self.drawing = False

    def mouseClickEvent(self, ev):
        if self.drawing and ev.button() == QtCore.Qt.MouseButton.LeftButton:
            ev.accept()
            p = self.mapSceneToView(ev.scenePos())
            self.stroke.emit(p.x(), p.y())
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None):
        if self.drawing and ev.button() == QtCore.Qt.MouseButton.LeftButton:
            ev.accept()
            p = self.mapSceneToView(ev.scenePos())
            self.stroke.emit(p.x(), p.y())
        else:
            ev.ignore()


class DatasetPicker(QtWidgets.QWidget):
    """Emits datasetChosen(name, data): name a dataset name, DRAWING or a file path; data an
    (N, 2) float tensor for drawings and files (None for named datasets)."""
    datasetChosen = QtCore.Signal(str, object)
    error = QtCore.Signal(str, str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.current = "moons"
        self.current_data = None
        self.files: dict[str, torch.Tensor] = {}
        self.drawing = np.zeros((0, 2), np.float32)
        self._rng = np.random.default_rng(0)
        self._cache: dict = {}

        self.combo = combo()
        self.combo.setToolTip("The training data. Analytic mixtures (8gaussians, 25gaussians, gmm) "
                              "also give the exact score for comparison.")
        for n in D.names():
            self.combo.addItem(n, n)
        self.combo.addItem("✎ drawing", DRAWING)
        self.combo.activated.connect(self._picked)
        self.open_btn = QtWidgets.QPushButton("Open file…")
        self.open_btn.setToolTip("Train on your own 2D points: " + ", ".join(EXTENSIONS) +
                                 " with two columns x, y (an optional header row)")
        self.open_btn.clicked.connect(self.open_dialog)

        self.box = DrawBox()
        self.view = pg.PlotWidget(viewBox=self.box)
        self.view.setMinimumHeight(180)
        self.view.setMaximumHeight(230)
        self.view.hideAxis("left")
        self.view.hideAxis("bottom")
        self.view.setAspectLocked(True)
        self.points = Points(theme.DATA, alpha=160, size=2)
        self.view.addItem(self.points)
        self.img = pg.ImageItem()
        self.view.addItem(self.img)
        self.label = pg.TextItem("", color=theme.FG, anchor=(0, 0))
        self.view.addItem(self.label, ignoreBounds=True)
        self.box.stroke.connect(self._paint)
        self.box.sigRangeChanged.connect(self._place_label)

        # draw tools
        self.draw_tools = QtWidgets.QWidget()
        self.add_btn = QtWidgets.QRadioButton("add")
        self.erase_btn = QtWidgets.QRadioButton("erase")
        self.add_btn.setChecked(True)
        self.brush = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.brush.setRange(1, 60)
        self.brush.setValue(15)
        self.brush.setToolTip("Brush radius (in canvas units × 100)")
        self.clear_btn = QtWidgets.QPushButton("Clear")
        self.clear_btn.clicked.connect(self.clear_drawing)
        self.train_btn = QtWidgets.QPushButton("Train on drawing")
        self.train_btn.setToolTip("Use the painted points as the dataset (restarts the run)")
        self.train_btn.clicked.connect(self.use_drawing)
        tl = QtWidgets.QGridLayout(self.draw_tools)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.add_btn, 0, 0)
        tl.addWidget(self.erase_btn, 0, 1)
        tl.addWidget(QtWidgets.QLabel("brush"), 0, 2)
        tl.addWidget(self.brush, 0, 3)
        tl.addWidget(self.clear_btn, 1, 0, 1, 2)
        tl.addWidget(self.train_btn, 1, 2, 1, 2)
        self.draw_tools.setVisible(False)

        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.combo, 1)
        top.addWidget(self.open_btn)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.view)
        lay.addWidget(self.draw_tools)
        self.select("moons", emit=False)

    # ------------------------------------------------------------ selection
    def _picked(self, idx):
        name = self.combo.itemData(idx)
        if name == DRAWING:
            self.enter_draw_mode()
            return
        self.select(name)

    def select(self, name: str, emit: bool = True):
        """Pick a named dataset (or a loaded file path)."""
        self.box.drawing = False
        self.draw_tools.setVisible(False)
        self.view.setMinimumHeight(180)
        self.view.setMaximumHeight(230)
        i = self.combo.findData(name)
        if i >= 0:
            self.combo.setCurrentIndex(i)
        data = self.files.get(name)
        self.current, self.current_data = name, data
        self._preview(name, data)
        if emit:
            self.datasetChosen.emit(name, data)

    def _restore_combo(self):
        i = self.combo.findData(self.current)
        if i >= 0:
            self.combo.setCurrentIndex(i)

    def _preview(self, name, data=None):
        try:
            if data is None:
                if name not in self._cache:
                    self._cache[name] = D.load(name, PREVIEW_N, seed=0).numpy()
                x = self._cache[name]
            else:
                x = data[:PREVIEW_N].numpy() if isinstance(data, torch.Tensor) else np.asarray(data)[:PREVIEW_N]
        except Exception as e:
            self.error.emit("Could not preview the dataset", f"{name}: {e}")
            return
        if x.ndim == 4:
            self.points.setData(None)
            self.img.setVisible(True)
            h, w = show_image_grid(self.img, x[:36])[:2]
            self.view.setRange(xRange=(0, w), yRange=(0, h * 1.14), padding=0.02)   # room for the label
            self.label.setText(f"{name}: images {tuple(x.shape[1:])}")
        else:
            self.img.setVisible(False)
            self.points.setData(x)
            lo, hi = x.min(0).astype(float), x.max(0).astype(float)
            c, half = (lo + hi) / 2, float((hi - lo).max()) / 2 * 1.15 + 1e-3
            cx, cy = float(c[0]), float(c[1])       # python floats: float32 ranges overflow in pyqtgraph's limits
            self.view.setRange(xRange=(cx - half, cx + half), yRange=(cy - half, cy + half), padding=0)
            n = len(data) if data is not None else None
            self.label.setText(f"{os.path.basename(name)}" + (f": {n} points" if n else ""))
        self._place_label()

    def _place_label(self, *a):
        (x0, x1), (y0, y1) = self.box.viewRange()
        self.label.setPos(x0, y1)

    # ------------------------------------------------------------ files
    def open_dialog(self):
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open a 2D point file", "", "Point files (*.csv *.tsv *.txt *.npy *.npz);;All files (*)")
        if path:
            self.open_file(path)

    def open_file(self, path: str) -> bool:
        """Load a user file; on a bad file show the engine's message and keep the current dataset."""
        try:
            x = load_points_file(path)
        except DataFileError as e:
            self.error.emit("Could not use this file", str(e))
            self._restore_combo()
            return False
        self.files[path] = x
        if self.combo.findData(path) < 0:
            self.combo.addItem(f"📄 {os.path.basename(path)}", path)
        self.select(path)
        return True

    # ------------------------------------------------------------ drawing
    def enter_draw_mode(self):
        self.box.drawing = True
        self.view.setMaximumHeight(340)
        self.view.setMinimumHeight(300)
        self.draw_tools.setVisible(True)
        self.img.setVisible(False)
        i = self.combo.findData(DRAWING)
        self.combo.setCurrentIndex(i)
        self.view.setRange(xRange=(-DRAW_RANGE, DRAW_RANGE), yRange=(-DRAW_RANGE, DRAW_RANGE), padding=0)
        self.points.setData(self.drawing)
        self._draw_label()

    def _draw_label(self):
        self.label.setText(f"paint with the mouse: {len(self.drawing)} points")
        self._place_label()

    def _paint(self, x, y):
        r = self.brush.value() / 100.0
        if self.erase_btn.isChecked():
            keep = np.hypot(self.drawing[:, 0] - x, self.drawing[:, 1] - y) > r
            self.drawing = self.drawing[keep]
        else:
            self.add_points(x, y, r)
        self.points.setData(self.drawing)
        self._draw_label()

    def add_points(self, x, y, r=0.15, k=12):
        """Spray k points uniformly in the disk of radius r around (x, y)."""
        th = self._rng.uniform(0, 2 * np.pi, k)
        rad = r * np.sqrt(self._rng.uniform(0, 1, k))
        pts = np.stack([x + rad * np.cos(th), y + rad * np.sin(th)], 1).astype(np.float32)
        self.drawing = np.concatenate([self.drawing, pts])

    def clear_drawing(self):
        self.drawing = np.zeros((0, 2), np.float32)
        self.points.setData(None)
        self._draw_label()

    def use_drawing(self) -> bool:
        if len(self.drawing) < 10:
            self.error.emit("Not enough points", f"The drawing has {len(self.drawing)} points; paint at least 10 "
                                                 f"(hold the left mouse button and drag on the canvas).")
            return False
        data = torch.from_numpy(self.drawing.copy())
        self.current, self.current_data = DRAWING, data
        self.datasetChosen.emit(DRAWING, data)
        return True
