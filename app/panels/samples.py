"""Samples: generated points over the data, refreshed every few seconds of training, with the
sample-quality metric from Run.evaluate: the energy distance to held-out data in multiples of
the iid level (the energy distance between two independent draws of the data: 1x is perfect).
Image datasets show the samples as an image grid with the digit classifier's metrics when they
apply (engines.digit_classifier: FID, Inception Score, the digits the samples look like).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from engines import likelihood, quality

from .. import theme
from ..flow_layout import FlowLayout
from .base import Panel, Points, centered_message, info_text, plot_widget, show_image_grid, set_range_now


BARS = "▁▂▃▄▅▆▇█"


def class_bars(hist) -> str:
    """Fractions of samples per digit 0..9 as a row of block characters (tallest = most)."""
    h = np.asarray(hist, float)
    top = h.max() if h.size and h.max() > 0 else 1.0
    return "".join(BARS[min(int(v / top * (len(BARS) - 1) + 0.5), len(BARS) - 1)] if v > 0 else "·" for v in h)


def image_metric_lines(m: dict, ref: dict | None = None) -> list[str]:
    """FID and Inception Score of digit samples (engines.digit_classifier), explained briefly.
    ref: the same metrics of as many real training images (FID is biased upwards for small
    sample counts, so the real images' value at the same count is the floor to compare with)."""
    out = []
    ref = ref or {}
    if "fid" in m:
        floor = f"real images: {ref['fid']:.0f}; " if "fid" in ref else ""
        out.append(f"FID {m['fid']:.1f} ({floor}lower is better)")
    if "inception_score" in m:
        real = f"real images: {ref['inception_score']:.1f}; " if "inception_score" in ref else ""
        out.append(f"Inception Score {m['inception_score']:.2f} ({real}10 at most)")
    if m.get("class_histogram") is not None:
        line = f"digits 0-9: {class_bars(m['class_histogram'])}"
        if "confident_fraction" in m:
            line += f"  ({100 * m['confident_fraction']:.0f}% clearly recognised)"
        out.append(line)
    return out


class SamplesPanel(Panel):
    title = "Samples"
    refreshRequested = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.samples = None
        self.metrics = {}
        self.step = None
        self.history = []          # (step, energy_distance_x_iid)
        self.sampler_name = ""
        self.plot = plot_widget("Generated samples", "x₁", "x₂", aspect=True)
        self.pi = self.plot.getPlotItem()
        self.data = Points(theme.DATA, alpha=110, size=2, static=True)
        self.data.setZValue(-5)
        self.pi.addItem(self.data)
        self.points = Points(theme.SAMPLES, alpha=200, size=3)
        self.pi.addItem(self.points)
        self.img = pg.ImageItem()
        self.pi.addItem(self.img)
        leg = theme.legend(self.pi, (-5, -5))
        self._leg_data = pg.ScatterPlotItem(symbol="s", size=7, pen=None, brush=pg.mkBrush(*theme.DATA, 200))
        self._leg_s = pg.ScatterPlotItem(symbol="s", size=7, pen=None, brush=pg.mkBrush(*theme.SAMPLES, 230))
        leg.addItem(self._leg_data, "data")
        leg.addItem(self._leg_s, "samples")
        self.legend = leg
        self.text = info_text(self.pi)
        self.empty = centered_message(self.pi)

        self.n = QtWidgets.QSpinBox()
        self.n.setRange(10, 100000)
        self.n.setValue(1000)
        self.n.setSingleStep(500)
        self.n.setToolTip("Number of samples drawn each refresh (the metric uses up to 2000)")
        self.n.valueChanged.connect(lambda *a: self.wantChanged.emit())
        self.every = QtWidgets.QDoubleSpinBox()
        self.every.setRange(0.5, 600)
        self.every.setValue(3.0)
        self.every.setSuffix(" s")
        self.every.setToolTip("While training, draw fresh samples this often (seconds)")
        self.every.valueChanged.connect(lambda *a: self.wantChanged.emit())
        self.refresh = QtWidgets.QPushButton("Refresh")
        self.refresh.setToolTip("Draw new samples from the current model now")
        self.refresh.clicked.connect(self.refreshRequested.emit)
        self.show_data = QtWidgets.QCheckBox("data")
        self.show_data.setChecked(True)
        self.show_data.toggled.connect(lambda on: self.data.setVisible(on))
        row = FlowLayout()                         # wraps on a narrow panel (fits a 1366 px screen)
        row.addWidget(QtWidgets.QLabel("n"))
        row.addWidget(self.n)
        row.addWidget(QtWidgets.QLabel("every"))
        row.addWidget(self.every)
        row.addWidget(self.show_data)
        row.addWidget(self.refresh)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(row)
        lay.addWidget(self.plot, 1)

    def set_image_mode(self, img: bool):
        """Before a run starts: image runs draw a few dozen samples (a grid), point runs ~1000."""
        if img != getattr(self, "_img_mode", False):
            self._img_mode = img
            if img:
                self._points_n = self.n.value()
                self.n.setValue(64)
            else:
                self.n.setValue(getattr(self, "_points_n", 1000))

    def reset(self, info):
        super().reset(info)
        self.samples, self.metrics, self.step = None, {}, None
        self.history = []
        img = bool(info.is_image)
        self.img.setVisible(img)
        self.data.setVisible(not img and self.show_data.isChecked())
        self.legend.setVisible(not img)
        self.points.setData(None)
        self.show_data.setEnabled(not img)
        for ax in ("left", "bottom"):
            self.pi.showAxis(ax, not img)
        if img:
            self.data.setData(None)
            self.pi.setTitle("Generated images", color=theme.FG, size=theme.title_size())
        else:
            self.pi.setTitle("Generated samples", color=theme.FG, size=theme.title_size())
            self.data.setData(info.preview)
            b = info.bounds
            if b:
                set_range_now(self.pi, xRange=b[:2], yRange=b[2:], padding=0)
        self.text.setText("")
        self.empty.setText("Samples appear here a few seconds into training" if info.samplers
                           else "")
        self.empty.setVisible(True)

    def set_sampler_name(self, name):
        self.sampler_name = name

    def want(self):
        return dict(samples=dict(n=int(self.n.value()), every=float(self.every.value())))

    def on_snapshot(self, snap):
        if snap.samples is not None:
            self.samples = snap.samples
            self.metrics = dict(snap.metrics)
            self.step = snap.metrics.get("samples_step", snap.step)
            if "energy_distance_x_iid" in self.metrics:
                self.history.append((self.step, self.metrics["energy_distance_x_iid"]))
            self.dirty = True

    def _draw(self):
        if self.samples is None:
            return
        self.empty.setVisible(False)
        x = np.asarray(self.samples)
        if x.ndim < 3:
            self.points.setData(x)
        m = self.metrics
        lines = [f"{len(x)} samples · model of step {self.step}"]
        if "fid" in m or "inception_score" in m:
            lines += image_metric_lines(m, m.get("reference") or {})   # real images' figures, from the session
        else:                                # x iid with its reference and noise band, or why there is none
            lines += quality.summary_lines(m)
        if likelihood.summary_line(m):       # held-out NLL with its unit
            lines.append(likelihood.summary_line(m))
        if m.get("diverged"):
            lines.append(f"{m['diverged']} samples diverged (not finite): not drawn")
        if "modes_covered" in m:
            lines.append(f"modes covered: {m['modes_covered']}/{m['modes_total']}")
        if m.get("nfe"):
            lines.append(f"{self.sampler_name or 'sampler'}: {m['nfe']} evaluations, {m.get('sample_seconds', 0):.2f} s")
        self.text.setText("\n".join(lines))
        if x.ndim >= 3:
            show_image_grid(self.img, x[:64])
            # room above the grid for the text: its lines in pixels, turned into image rows
            h, vb_h = self.img.height(), max(self.pi.getViewBox().height(), 100.0)
            need = 16.0 * len(lines) + 8
            head = need * h / max(vb_h - need, 40.0)
            set_range_now(self.pi, xRange=(0, self.img.width()), yRange=(0, h + head), padding=0.02)
