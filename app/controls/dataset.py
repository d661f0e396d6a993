"""Dataset picker: named datasets (engines.data.names(): 2D toys, analytic mixtures, image
sets) with a live preview, a draw mode in which the user paints the training points with the
mouse, and user files: 2D points (CSV/TSV/NPY/NPZ via engines.data.files.load_points_file) or
images (a folder of PNG/JPEG, an image .npy/.npz, an MNIST IDX file via
engines.data.images.load_images). A loader's DataFileError message is shown as is and the
current dataset stays. Big image files load in a background thread with a progress bar."""
from __future__ import annotations

import os
import threading

import numpy as np
import pyqtgraph as pg
import torch
from PySide6 import QtCore, QtWidgets

from engines import data as D
from engines.data.files import EXTENSIONS, DataFileError, load_points_file
from engines.data.images import IMAGE_EXTENSIONS, is_image_path, load_images

from .. import theme
from ..panels.base import Points, show_image_grid
from .form import combo

DRAW_RANGE = 3.0          # the canvas is [-3, 3]^2
DRAWING = "drawing"
PREVIEW_N = 1500
BACKGROUND_BYTES = 4 * 2 ** 20      # image files bigger than this (or folders) load in a thread
FILE_FILTER = ("Data files (*.csv *.tsv *.txt *.npy *.npz *.png *.jpg *.jpeg *.bmp *.gif *.webp *.tif *.tiff "
               "*idx*-ubyte *idx*-ubyte.gz *.idx *.gz);;"
               "2D points (*.csv *.tsv *.txt *.npy *.npz);;"
               "Images (*.png *.jpg *.jpeg *.bmp *.gif *.webp *.tif *.tiff *.npy *.npz);;"
               "MNIST IDX (*idx*-ubyte *idx*-ubyte.gz *.idx *.gz);;All files (*)")


def _kind_of(name: str) -> str:
    """A heading for the dataset list: which group a built-in dataset belongs to."""
    if D.is_image(name):
        return "images"
    return "analytic mixtures (exact score known)" if D.mixture(name) is not None else "2D toys"


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
        self.combo.setToolTip("The training data: 2D toys, analytic mixtures (8gaussians, 25gaussians, gmm: "
                              "they also give the exact score for comparison) and small image sets "
                              "(digits 8x8, digits16, shapes 16x16; the _binary ones for RBMs and "
                              "discrete diffusion).")
        model = self.combo.model()
        group = None
        for n in D.names():
            g = _kind_of(n)
            if g != group:        # a disabled heading row per group
                group = g
                self.combo.addItem(f"— {g} —", None)
                model.item(self.combo.count() - 1).setEnabled(False)
            self.combo.addItem(n, n)
        self.combo.insertSeparator(self.combo.count())
        self.combo.addItem("✎ drawing", DRAWING)
        self.combo.activated.connect(self._picked)
        self.open_btn = QtWidgets.QToolButton()
        self.open_btn.setText("Open file…")
        self.open_btn.setPopupMode(QtWidgets.QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        self.open_btn.setToolTip("Train on your own data: 2D points (" + ", ".join(EXTENSIONS) +
                                 ", two columns x, y) or images (" + ", ".join(IMAGE_EXTENSIONS[:3]) +
                                 "…, an image .npy/.npz, an MNIST IDX file). The arrow: open a folder of images.")
        self.open_btn.clicked.connect(self.open_dialog)
        menu = QtWidgets.QMenu(self.open_btn)
        menu.addAction("Open file…", self.open_dialog)
        menu.addAction("Open image folder…", self.open_folder_dialog)
        self.open_btn.setMenu(menu)
        # background loading of big image files
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setVisible(False)
        self.cancel_btn = QtWidgets.QPushButton("Cancel")
        self.cancel_btn.setVisible(False)
        self.cancel_btn.clicked.connect(self.cancel_loading)
        self._load = None                 # dict(path, thread, fraction, result, error, cancel)
        self._load_timer = QtCore.QTimer(self)
        self._load_timer.setInterval(50)
        self._load_timer.timeout.connect(self._poll_load)

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
        prog = QtWidgets.QHBoxLayout()
        prog.addWidget(self.progress, 1)
        prog.addWidget(self.cancel_btn)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addLayout(prog)
        lay.addWidget(self.view)
        lay.addWidget(self.draw_tools)
        self.select("moons", emit=False)

    # ------------------------------------------------------------ selection
    def _picked(self, idx):
        name = self.combo.itemData(idx)
        if name is None:                  # a heading
            self._restore_combo()
            return
        if name == DRAWING:
            self.enter_draw_mode()
            return
        self.select(name)

    def select(self, name: str, emit: bool = True):
        """Pick a named dataset (or a loaded file path). A background load of another file is
        cancelled: it must not replace this newer choice when it finishes."""
        if self._load is not None and self._load["path"] != name:
            self.cancel_loading()
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
            shape = "×".join(str(v) for v in x.shape[1:])
            n = f"{len(data):,} images" if data is not None else "images"
            self.label.setText(f"{os.path.basename(name)}: {n} {shape} (C×H×W)")
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
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open 2D points or images", "", FILE_FILTER)
        if path:
            self.open_file(path)

    def open_folder_dialog(self):
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Open a folder of images (PNG, JPEG…)")
        if path:
            self.open_file(path)

    def open_file(self, path: str, background: bool | None = None) -> bool | None:
        """Load a user file or image folder; on a bad one show the engine's message and keep the
        current dataset (False). Image folders and big image files load in a thread with a
        progress bar (background=None: decide by size): None is returned then, and the dataset
        is chosen when the load has finished."""
        path = str(path)
        try:
            images = os.path.isdir(path) or is_image_path(path)
        except Exception:
            images = False
        if not images:
            try:
                x = load_points_file(path)
            except DataFileError as e:
                return self._failed(str(e))
            except OSError as e:         # unreadable (permissions), vanished...: a message, not a traceback
                return self._failed(f"{path}: {e.strerror or e}")
            return self._loaded(path, x)
        if background is None:
            try:
                background = os.path.isdir(path) or os.path.getsize(path) > BACKGROUND_BYTES
            except OSError:
                background = False
        if not background:
            try:
                x = load_images(path)
            except (DataFileError, OSError, ValueError) as e:
                return self._failed(str(e))
            return self._loaded(path, x)
        self._start_load(path)
        return None

    def _failed(self, msg: str) -> bool:
        self.error.emit("Could not use this file", msg)
        self._restore_combo()
        return False

    def _loaded(self, path: str, x) -> bool:
        self.files[path] = x
        if self.combo.findData(path) < 0:
            icon = "🖼" if x.ndim == 4 else "📄"
            self.combo.addItem(f"{icon} {os.path.basename(path.rstrip(os.sep)) or path}", path)
        self.select(path)
        return True

    # ------------------------------------------------------------ background loading
    def loading(self) -> bool:
        return self._load is not None

    def _start_load(self, path: str):
        self.cancel_loading()
        job = dict(path=path, fraction=0.0, result=None, error=None, cancel=False, done=False)

        def progress(f):
            if job["cancel"]:
                raise InterruptedError("cancelled")
            job["fraction"] = float(f)

        def work():
            try:
                job["result"] = load_images(path, progress=progress)
            except InterruptedError:
                pass
            except Exception as e:      # DataFileError and anything unexpected: shown, not raised
                job["error"] = str(e) if isinstance(e, (DataFileError, OSError, ValueError)) \
                    else f"{type(e).__name__}: {e}"
            finally:
                job["done"] = True
        job["thread"] = threading.Thread(target=work, name="load-images", daemon=True)
        self._load = job
        name = os.path.basename(path.rstrip(os.sep)) or path
        self.progress.setFormat(f"loading {name}: %p%")
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.cancel_btn.setVisible(True)
        self.open_btn.setEnabled(False)
        job["thread"].start()
        self._load_timer.start()

    def cancel_loading(self):
        job = self._load
        if job is None:
            return
        job["cancel"] = True
        job["thread"].join(0.5)          # the loader stops at its next progress check (a daemon if not)
        self._end_load()

    def _end_load(self):
        self._load = None
        self._load_timer.stop()
        self.progress.setVisible(False)
        self.cancel_btn.setVisible(False)
        self.open_btn.setEnabled(True)

    def _poll_load(self):
        job = self._load
        if job is None:
            return
        self.progress.setValue(int(1000 * min(max(job["fraction"], 0.0), 1.0)))
        if not job["done"]:
            return
        self._end_load()
        if job["cancel"]:
            return
        if job["error"] is not None:
            self._failed(job["error"])
        elif job["result"] is not None:
            self._loaded(job["path"], job["result"])

    # ------------------------------------------------------------ drawing
    def in_draw_mode(self) -> bool:
        """Painting a dataset that has not been used yet (Play must not train the previous one)."""
        return bool(getattr(self.box, "drawing", False)) and self.current != DRAWING

    def enter_draw_mode(self):
        self.cancel_loading()
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
