"""The comparison's widgets: one column of panels per run, the losses of all runs in one plot,
the shared scrubber, and the live table. They draw what they are given; numbers come from the
runs' messages and engines.compare."""
from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from engines.compare import Scrubber

from .. import theme
from ..panels.base import plot_widget, set_range_now
from ..panels.field import FieldPanel
from ..panels.particles import ParticlesPanel
from ..panels.samples import SamplesPanel

MAX_LOSS_POINTS = 4000            # per run; older points are thinned by 2 when exceeded


def run_color(i: int) -> tuple:
    return tuple(theme.SERIES[i % len(theme.SERIES)])


class RunColumn(QtWidgets.QFrame):
    """One run's cell: a header (its label in its colour, Change…, Remove) above the same three
    panels as every other run (field, particles, samples)."""
    changeRequested = QtCore.Signal(object)
    removeRequested = QtCore.Signal(object)

    PANELS = ("field", "particles", "samples")

    def __init__(self, label: str, color: tuple, parent=None):
        super().__init__(parent)
        self.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        self.color = color
        self.title = QtWidgets.QLabel()
        self.set_label(label)
        self.change_btn = QtWidgets.QToolButton()
        self.change_btn.setText("Change…")
        self.change_btn.setToolTip("Change this run's setting (family, schedule, sampler, any option, seed); "
                                   "the other runs go on")
        self.change_btn.clicked.connect(lambda: self.changeRequested.emit(self))
        self.remove_btn = QtWidgets.QToolButton()
        self.remove_btn.setText("✕")
        self.remove_btn.setToolTip("Remove this run from the comparison")
        self.remove_btn.clicked.connect(lambda: self.removeRequested.emit(self))
        self.status = QtWidgets.QLabel("building…")
        head = QtWidgets.QHBoxLayout()
        head.addWidget(self.title, 1)
        head.addWidget(self.status)
        head.addWidget(self.change_btn)
        head.addWidget(self.remove_btn)
        self.field, self.particles, self.samples = FieldPanel(), ParticlesPanel(), SamplesPanel()
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        lay.addLayout(head)
        self.row = QtWidgets.QBoxLayout(QtWidgets.QBoxLayout.Direction.LeftToRight)
        self.row.setSpacing(2)
        for p in self.panels():
            self.row.addWidget(p, 1)
        lay.addLayout(self.row, 1)
        self._compact()

    def _compact(self):
        """Four runs side by side must fit 1600 pixels: the panels' own controls shrink."""
        Policy = QtWidgets.QComboBox.SizeAdjustPolicy
        for combo in self.findChildren(QtWidgets.QComboBox):
            combo.setSizeAdjustPolicy(Policy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(3)
        for spin in self.findChildren(QtWidgets.QAbstractSpinBox):
            spin.setMaximumWidth(60)
        self.particles.trail_box.hide()
        self.particles.duration.hide()

    def set_stacked(self, stacked: bool):
        """Panels side by side (a run per row, 1-2 runs) or stacked (a run per column, 3-4 runs):
        either way the plots stay roughly square and the window fits 1600 x 1000."""
        D = QtWidgets.QBoxLayout.Direction
        self.row.setDirection(D.TopToBottom if stacked else D.LeftToRight)

    def set_label(self, label: str):
        self.label = label
        r, g, b = self.color
        self.title.setText(f"<b style='color: rgb({r},{g},{b})'>■ {label}</b>")

    def panels(self) -> list:
        return [self.field, self.particles, self.samples]

    def plots(self) -> list:
        return [self.field.plot, self.particles.plot, self.samples.plot]

    def want(self) -> dict:
        w = {}
        for p in self.panels():
            w.update(p.want())
        return w

    def draw(self) -> bool:
        drew = False
        for p in self.panels():
            drew |= p.draw()
        return drew


class LossOverlay(QtWidgets.QWidget):
    """Every run's training loss in one plot, one colour per run (bounded memory per run)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plot = plot_widget("Training loss, all runs", "step", "loss", grid=True)
        self.legend = theme.legend(self.plot.getPlotItem(), (-5, 5))
        self.curves: dict = {}
        self.data: dict = {}
        self.dirty = False
        self._last_draw = 0.0
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.plot)

    def set_run(self, key, label: str, color: tuple):
        self.remove_run(key)
        curve = self.plot.plot([], [], pen=pg.mkPen(color, width=1.5), name=label)
        self.curves[key] = curve
        self.data[key] = (np.empty(0), np.empty(0), 1, 0)    # steps, values, stride, counter

    def remove_run(self, key):
        curve = self.curves.pop(key, None)
        if curve is not None:
            self.legend.removeItem(curve)
            self.plot.removeItem(curve)
        self.data.pop(key, None)
        self.dirty = True

    def add(self, key, steps, values):
        if key not in self.data or len(steps) == 0:
            return
        s0, v0, stride, count = self.data[key]
        steps, values = np.asarray(steps, float), np.asarray(values, float)
        idx = (np.arange(len(steps)) + count) % stride == 0          # keep every stride-th record
        s, v = np.concatenate([s0, steps[idx]]), np.concatenate([v0, values[idx]])
        count += len(steps)
        while len(s) > MAX_LOSS_POINTS:
            s, v, stride = s[::2], v[::2], stride * 2
        self.data[key] = (s, v, stride, count)
        self.dirty = True

    MAX_HZ = 5.0      # like the main window's loss plot: a loss curve needs no more, and each
                      # redraw re-ranges and repaints the axes (27 redraws/s with 4 runs: 7 ms each)

    def draw(self) -> bool:
        if not self.dirty:
            return False
        now = time.perf_counter()
        if now - self._last_draw < 1.0 / self.MAX_HZ:
            return False
        self._last_draw = now
        self.dirty = False
        tails = []
        for key, curve in self.curves.items():
            s, v = self.data[key][:2]
            ok = np.isfinite(v)
            curve.setData(s[ok], v[ok])
            v = v[ok]
            tails.append(v[len(v) // 10:])          # past the first tenth: the start of a run
        tails = [t for t in tails if len(t)]       # would squash every later curve flat
        if tails:
            allv = np.concatenate(tails)
            lo, hi = np.percentile(allv, [1, 99])
            pad = 0.08 * max(hi - lo, 1e-6)
            set_range_now(self.plot.getPlotItem(), yRange=(lo - pad, hi + pad), padding=0)
        return True

    def series(self, key):
        return self.data[key][:2]


class SharedScrubber(QtWidgets.QWidget):
    """One slider in sampler time for every run's particles, aligned by noise level."""
    moved = QtCore.Signal(float)
    RESOLUTION = 1000

    def __init__(self, parent=None):
        super().__init__(parent)
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slider.setRange(0, self.RESOLUTION)
        self.slider.setToolTip("Sampler time for all runs at once: runs with noise levels are aligned by "
                               "sigma (t for diffusions, sigma for NCSN), the others by step")
        self.slider.valueChanged.connect(lambda v: self.moved.emit(v / self.RESOLUTION))
        self.label = QtWidgets.QLabel("sampler time: draw particles first (Sample all)")
        self.label.setWordWrap(True)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.slider)
        lay.addWidget(self.label)

    def position(self) -> float:
        return self.slider.value() / self.RESOLUTION

    def show_labels(self, scrubber: Scrubber, labels: list, p: float):
        sig = scrubber.target_sigma(p)
        parts = [f"{lab}: {scrubber.label(i, p) or '-'}" for i, lab in enumerate(labels)]
        head = f"noise level σ ≈ {sig:.3g}" if np.isfinite(sig) and p < 1 else ("final samples" if p >= 1 else "")
        self.label.setText(("  ·  ".join([head] + parts)) if head else "  ·  ".join(parts))


class TableView(QtWidgets.QWidget):
    """The comparison table; the leader of each column in bold with ★; Export CSV."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.table = QtWidgets.QTableWidget()
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.export_btn = QtWidgets.QPushButton("Export CSV…")
        self.export_btn.clicked.connect(self._export_dialog)
        self.note = QtWidgets.QLabel("★ leads its column (lower is better, except training speed)")
        self.current = None
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.note, 1)
        row.addWidget(self.export_btn)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.table, 1)
        lay.addLayout(row)

    def show_table(self, tab, colors: list):
        self.current = tab
        cols = [c for c in tab.columns]
        lead = tab.leaders()
        t = self.table
        t.setColumnCount(len(cols) + 1)
        t.setRowCount(len(tab.rows))
        t.setHorizontalHeaderLabels(["run"] + [tab.header(c) for c in cols])
        bold = QtGui.QFont()
        bold.setBold(True)
        for i, r in enumerate(tab.rows):
            item = QtWidgets.QTableWidgetItem(f"■ {r.label}")
            item.setForeground(QtGui.QColor(*colors[i % len(colors)]))
            t.setItem(i, 0, item)
            for j, c in enumerate(cols, start=1):
                leads = i in lead.get(c.key, ())
                it = QtWidgets.QTableWidgetItem(tab.cell(i, c) + (" ★" if leads else ""))
                if leads:
                    it.setFont(bold)
                it.setTextAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
                t.setItem(i, j, it)
        t.resizeColumnsToContents()

    def cell_text(self, row: int, key: str) -> str:
        keys = [c.key for c in self.current.columns]
        return self.table.item(row, 1 + keys.index(key)).text()

    def export_csv(self, path: str) -> bool:
        if self.current is None:
            return False
        with open(path, "w", newline="") as f:
            f.write(self.current.to_csv())
        return True

    def _export_dialog(self):
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export the comparison table", "comparison.csv",
                                                        "CSV (*.csv)")
        if path:
            try:
                self.export_csv(path)
            except OSError as e:
                QtWidgets.QMessageBox.warning(self, "Could not export", str(e))
