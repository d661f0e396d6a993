"""Checkpoint timeline: a slider over the checkpoints a run kept (engines.checkpoints, denser
early), the field, samples and sampler particles as they were at the chosen one, and "Branch from
here". The panel computes nothing: moving the slider emits `rewindRequested(step)`, and the
CheckpointPictures that come back (engines.checkpoints.pictures_at) are drawn; the Branch button
emits `branchRequested(step)` for the controller to start a run from that checkpoint
(engines.checkpoints.branch), in comparison with the original where compare mode exists."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from engines.checkpoints import CheckpointPictures
from engines.inspector import InspectorExtras

from .. import theme
from .base import Panel, arrow_segments, plot_widget, scale_arrows, set_range_now


class TimelinePanel(Panel):
    title = "Checkpoint timeline"
    rewindRequested = QtCore.Signal(int)     # a kept training step
    branchRequested = QtCore.Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.steps: tuple = ()
        self.pictures: CheckpointPictures | None = None
        self.frame = -1                      # particle frame shown (-1: the last)
        self.plot = plot_widget("", aspect=True)
        self.arrows = pg.PlotCurveItem(pen=pg.mkPen(theme.MODEL, width=1), connect="pairs")
        self.samples = pg.ScatterPlotItem(size=3, pen=None, brush=pg.mkBrush(*theme.SAMPLES[:3], 170))
        self.particles = pg.ScatterPlotItem(size=4, pen=None, brush=pg.mkBrush(*theme.TRUE[:3], 200))
        for item in (self.arrows, self.samples, self.particles):
            self.plot.addItem(item)
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.setTracking(False)       # one rewind per release, not one per pixel dragged
        self.slider.valueChanged.connect(self._chosen)
        self.slider.sliderMoved.connect(self._moving)
        self.step_label = QtWidgets.QLabel("no checkpoint yet")
        self.frames = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.frames.setRange(0, 0)
        self.frames.valueChanged.connect(self._frame_changed)
        self.show_field = QtWidgets.QCheckBox("field")
        self.show_field.setChecked(True)
        self.show_samples = QtWidgets.QCheckBox("samples")
        self.show_samples.setChecked(True)
        for box in (self.show_field, self.show_samples):
            box.toggled.connect(self._redraw)
        self.branch = QtWidgets.QPushButton("Branch from here")
        self.branch.setToolTip("start a new run from this checkpoint's weights and optimizer state")
        self.branch.setEnabled(False)
        self.branch.clicked.connect(lambda: self.branchRequested.emit(self.current_step()))
        top = QtWidgets.QHBoxLayout()
        top.addWidget(QtWidgets.QLabel("checkpoint"))
        top.addWidget(self.slider, 1)
        top.addWidget(self.step_label)
        top.addWidget(self.branch)
        bottom = QtWidgets.QHBoxLayout()
        bottom.addWidget(QtWidgets.QLabel("sampler step"))
        bottom.addWidget(self.frames, 1)
        bottom.addWidget(self.show_field)
        bottom.addWidget(self.show_samples)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addWidget(self.plot, 1)
        lay.addLayout(bottom)

    # ------------------------------------------------------------------ messages
    def reset(self, info):
        super().reset(info)
        self.steps, self.pictures = (), None
        self.slider.setRange(0, 0)
        self.step_label.setText("no checkpoint yet")
        self.branch.setEnabled(False)
        if getattr(info, "bounds", None):
            x0, x1, y0, y1 = info.bounds
            set_range_now(self.plot, xRange=(x0, x1), yRange=(y0, y1), padding=0)

    def on_message(self, msg):
        if isinstance(msg, InspectorExtras):
            self.set_steps(msg.checkpoint_steps)
        elif isinstance(msg, CheckpointPictures):
            self.set_pictures(msg)

    def set_steps(self, steps):
        """The kept checkpoint steps, ascending; the slider keeps its step if still kept."""
        steps = tuple(int(s) for s in steps)
        if steps == self.steps:
            return
        keep = self.current_step() if self.steps else None
        self.steps = steps
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(len(steps) - 1, 0))
        idx = steps.index(keep) if keep in steps else len(steps) - 1
        self.slider.setValue(max(idx, 0))
        self.slider.blockSignals(False)
        self.branch.setEnabled(bool(steps))
        self._label()

    def set_pictures(self, pictures: CheckpointPictures):
        self.pictures = pictures
        n = 0 if pictures.particles is None else len(pictures.particles)
        self.frames.blockSignals(True)
        self.frames.setRange(0, max(n - 1, 0))
        self.frames.setValue(max(n - 1, 0))
        self.frames.blockSignals(False)
        self.frame = n - 1
        self.dirty = True

    def current_step(self) -> int:
        if not self.steps:
            return 0
        return self.steps[min(self.slider.value(), len(self.steps) - 1)]

    # ------------------------------------------------------------------ controls
    def _label(self, idx=None):
        if not self.steps:
            self.step_label.setText("no checkpoint yet")
            return
        i = self.slider.value() if idx is None else idx
        self.step_label.setText(f"step {self.steps[i]:,} ({i + 1}/{len(self.steps)})")

    def _moving(self, idx):
        if self.steps:
            self._label(min(idx, len(self.steps) - 1))

    def _chosen(self, _idx):
        self._label()
        if self.steps:
            self.rewindRequested.emit(self.current_step())

    def _frame_changed(self, v):
        self.frame = v
        self.dirty = True

    def _redraw(self, *_):
        self.dirty = True

    # ------------------------------------------------------------------ drawing
    def _draw(self):
        p = self.pictures
        if p is None:
            for item in (self.arrows, self.samples, self.particles):
                item.setData([], [])
            return
        theme.style_plot(self.plot.getPlotItem(), f"as it was at step {p.step:,}")
        f = p.field or {}
        if self.show_field.isChecked() and "score" in f:
            xs, ys, sc = np.asarray(f["xs"]), np.asarray(f["ys"]), np.asarray(f["score"])   # (R,), (R,), (R, R, 2)
            gx, gy = np.meshgrid(xs, ys)
            cell = float(min(np.diff(xs).mean(), np.diff(ys).mean())) if len(xs) > 1 else 1.0
            u = scale_arrows(sc.reshape(-1, 2), cell)                                   # (R*R, 2)
            ax, ay = arrow_segments(gx.ravel(), gy.ravel(), u[:, 0], u[:, 1])
            self.arrows.setData(ax, ay)
        else:
            self.arrows.setData([], [])
        s = p.samples
        if self.show_samples.isChecked() and s is not None and s.ndim == 2:
            self.samples.setData(s[:, 0], s[:, 1])
        else:
            self.samples.setData([], [])
        if p.particles is not None and len(p.particles):
            x = p.particles[min(max(self.frame, 0), len(p.particles) - 1)]
            self.particles.setData(x[:, 0], x[:, 1])
        else:
            self.particles.setData([], [])
