"""Field: the learned score as arrows on a grid at a chosen noise level, over a heat map.

Arrows are one PlotCurveItem(connect='pairs') holding every shaft and head (6 points an
arrow), not one item per arrow. The heat map is |score| (log10), or the energy / log density
when the family provides them. For analytic datasets the exact score of the noised mixture
(`true_score` from Run.field) can be overlaid and the relative error is shown.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from engines.families.base import time_display_offset

from .. import theme
from ..flow_layout import FlowLayout
from .base import (Panel, Points, arrow_segments, centered_message, info_text, plot_widget, scale_arrows, set_range_now,
                   show_image_grid)

BACKGROUNDS = [  # key in the field dict -> label
    ("score", "|score|  (log10)"),
    ("energy", "energy E(x)"),
    ("log_density", "log density"),
    ("discriminator", "discriminator D(x) / critic f(x)"),
    ("error", "|learned - true score|  (log10)"),
    ("none", "no background"),
]


FIELD_KEYS = {"score", "energy", "log_density", "discriminator"}   # what can be drawn on the plane


class LevelSlider(QtWidgets.QWidget):
    """A slider over a family's `level` dict(kind, lo, hi, log, default[, integer])."""
    valueChanged = QtCore.Signal(object)
    N = 1000

    def __init__(self, parent=None):
        super().__init__(parent)
        self.level = None
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slider.setRange(0, self.N)
        self.label = QtWidgets.QLabel("")
        self.label.setMinimumWidth(70)
        self.name = QtWidgets.QLabel("noise level")
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.name)
        lay.addWidget(self.slider, 1)
        lay.addWidget(self.label)
        self.slider.valueChanged.connect(self._changed)

    def set_level(self, level: dict | None):
        self.level = level
        self.setEnabled(level is not None)
        self.setVisible(level is not None)      # families without noise levels: no slider
        if level is None:
            self.label.setText("-")
            return
        kind = level.get("kind", "t")
        self.name.setText("noise σ" if kind == "sigma" else "time t")
        self.slider.setToolTip(
            "The noise level the field is shown at. Small: the score of (almost) clean data, "
            "sharp and large near the data. Large: the score of heavily noised data, smooth, "
            "pointing to the centre.\n" +
            ("σ: standard deviation of the Gaussian noise added to the data" if kind == "sigma"
             else "t: diffusion time/step; x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps"))
        self.blockSignals(True)
        self.slider.blockSignals(True)
        self.slider.setValue(self._to_pos(level.get("default", level["lo"])))
        self.slider.blockSignals(False)
        self.blockSignals(False)
        self._update_label()

    def _to_pos(self, v):
        lv = self.level
        lo, hi = float(lv["lo"]), float(lv["hi"])
        if hi <= lo:
            return 0
        if lv.get("log") and lo > 0:
            f = (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
        else:
            f = (v - lo) / (hi - lo)
        return int(round(min(max(f, 0.0), 1.0) * self.N))

    def value(self):
        lv = self.level
        if lv is None:
            return None
        f = self.slider.value() / self.N
        lo, hi = float(lv["lo"]), float(lv["hi"])
        if lv.get("log") and lo > 0:
            v = math.exp(math.log(lo) + f * (math.log(hi) - math.log(lo)))
        else:
            v = lo + f * (hi - lo)
        if lv.get("integer") or (isinstance(lv["lo"], int) and isinstance(lv["hi"], int) and not lv.get("log")):
            v = int(round(v))
        return v

    def set_value(self, v):
        if self.level is not None:
            self.slider.setValue(self._to_pos(v))

    def _update_label(self):
        v = self.value()
        if v is not None:       # the papers' t: a discrete chain's index 0..T-1 is shown as 1..T
            v = v + time_display_offset(self.level)
        self.label.setText("-" if v is None else (str(v) if isinstance(v, int) else f"{v:.3g}"))

    def _changed(self, *a):
        self._update_label()
        self.valueChanged.emit(self.value())


class FieldPanel(Panel):
    title = "Field"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.field = None
        self.resolution = 24
        self.plot = plot_widget("Score  ∇ₓ log p(x)", "x₁", "x₂", aspect=True)
        self.pi = self.plot.getPlotItem()
        self.img = pg.ImageItem()
        self.img.setZValue(-10)
        self.pi.addItem(self.img)
        self.cbar = pg.ColorBarItem(values=(0, 1), colorMap=theme.HEAT_CMAP, interactive=False, width=14)
        self.cbar.axis.enableAutoSIPrefix(False)
        self.cbar.setImageItem(self.img, insert_in=self.pi)
        self.data = Points(theme.DATA, alpha=90, size=2, static=True)
        self.data.setZValue(-5)
        self.pi.addItem(self.data)
        # 1-pixel cosmetic pens take Qt's fast line path (wider pens are stroked as polygons)
        self.arrows = pg.PlotCurveItem(pen=pg.mkPen(*theme.MODEL, 235, width=1), connect="pairs",
                                       skipFiniteCheck=True)
        self.true_arrows = pg.PlotCurveItem(pen=pg.mkPen(*theme.TRUE, 230, width=1), connect="pairs",
                                            skipFiniteCheck=True)
        self.pi.addItem(self.arrows)
        self.pi.addItem(self.true_arrows)
        self.legend = theme.legend(self.pi, (-5, -5))
        self.legend.addItem(self.arrows, "model score")
        self.text = info_text(self.pi)
        self.empty = centered_message(self.pi)

        self.level = LevelSlider()
        self.level.valueChanged.connect(lambda v: self.wantChanged.emit())
        self.bg = QtWidgets.QComboBox()
        self.bg.setToolTip("What the colours show")
        self.bg.currentIndexChanged.connect(self._touch)
        self.true_box = QtWidgets.QCheckBox("true score")
        self.true_box.setToolTip("Overlay the exact score of the noised analytic mixture (green):\n"
                                 "∇ log Σ_k w_k N(x; α μ_k, (α² s_k² + σ²) I)")
        self.true_box.setChecked(True)
        self.true_box.toggled.connect(self._touch)
        self.data_box = QtWidgets.QCheckBox("data")
        self.data_box.setChecked(True)
        self.data_box.setToolTip("Show the training points (blue)")
        self.data_box.toggled.connect(self._touch)
        self.mode = QtWidgets.QComboBox()
        self.mode.addItems(["scaled", "direction"])
        self.mode.setToolTip("scaled: arrow length ∝ |score| (clipped at the 95th percentile)\n"
                             "direction: unit arrows; the colours carry the magnitude")
        self.mode.currentIndexChanged.connect(self._touch)
        self.res = QtWidgets.QSpinBox()
        self.res.setRange(6, 64)
        self.res.setValue(self.resolution)
        self.res.setToolTip("Grid resolution R: R x R arrows (a family without arrows gets a 2R x 2R heat map)")
        self.res.valueChanged.connect(self._set_res)

        self.controls = QtWidgets.QWidget()
        row2 = FlowLayout(self.controls)           # wraps on a narrow panel (fits a 1366 px screen)
        row2.addWidget(self.bg)
        row2.addWidget(self.mode)
        self.res_label = QtWidgets.QLabel("grid")
        row2.addWidget(self.res_label)
        row2.addWidget(self.res)
        row2.addWidget(self.true_box)
        row2.addWidget(self.data_box)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.level)
        lay.addWidget(self.controls)
        lay.addWidget(self.plot, 1)
        # image runs: no 2D field; the panel shows training images to compare the samples with
        self.data_img = pg.ImageItem()
        self.data_img.setVisible(False)
        self.pi.addItem(self.data_img)
        # which noised data the field is of, under the plot (on the heat map it could not be read)
        self.caption = QtWidgets.QLabel("")
        self.caption.setObjectName("hint")
        self.caption.setWordWrap(True)
        self.caption.setToolTip("In the standardized units the model trains in (data shifted and scaled "
                                "to mean 0 and unit spread); x₀ is the data, ε ~ N(0, I)")
        self.caption.setVisible(False)
        lay.addWidget(self.caption)
        self.note = QtWidgets.QLabel("")
        self.note.setObjectName("hint")
        self.note.setWordWrap(True)
        self.note.setVisible(False)
        lay.addWidget(self.note)
        self.no_field = False          # the family gives nothing to draw on the plane
        self._fill_backgrounds(("score",))
        self.empty.setText("Waiting for the model…")

    # ------------------------------------------------------------ state
    def reset(self, info):
        super().reset(info)
        self.field = None
        self._levels = None
        self.bg.blockSignals(True)
        self.bg.clear()               # the first field of the new run picks its best background
        self.bg.blockSignals(False)
        self.level.set_level(info.level)
        self.true_box.setVisible(bool(info.analytic))
        img = bool(info.is_image)
        self.no_field = img
        self.controls.setVisible(not img)
        self.level.setVisible(info.level is not None and not img)
        self.data_img.setVisible(img)
        self.img.setVisible(False)
        self.cbar.setVisible(False)
        self.legend.setVisible(not img)
        for ax in ("left", "bottom"):
            self.pi.showAxis(ax, not img)
        self.arrows.setData([], [])
        self.true_arrows.setData([], [])
        self.img.clear()
        self.text.setText("")
        self.caption.setVisible(False)
        if img:
            self.data.setData(None)
            prev = info.preview
            if prev is not None and len(prev):
                show_image_grid(self.data_img, prev[:36])
                set_range_now(self.pi, xRange=(0, self.data_img.width()), yRange=(0, self.data_img.height()), padding=0.02)
            self._title = "Training images"
            self.pi.setTitle(self._title, color=theme.FG, size=theme.title_size())
            self.empty.setVisible(False)
            self.note.setText("Images have no 2D field to draw (a score, energy or density over the plane). "
                              "Shown instead: training images, to compare with the Samples; the family's own "
                              "pictures are in Family views.")
            self.note.setVisible(True)
        else:
            self.note.setVisible(False)
            self.empty.setText("Computing the field…")
            self.empty.setVisible(True)
            self.data.setData(info.preview)
            b = info.bounds
            if b:
                set_range_now(self.pi, xRange=b[:2], yRange=b[2:], padding=0.04)   # room for the edge arrows

    def want(self):
        if getattr(self.info, "is_image", None):
            return {}
        return dict(field=dict(resolution=self.grid_resolution(), level=self.level.value()))

    def grid_resolution(self) -> int:
        """R of the R x R grid asked for: the arrow grid, or twice as fine for a family whose
        field is a heat map only (no arrows to keep apart, a smoother picture)."""
        caps = getattr(self.info, "capabilities", None)
        if caps is not None and "score" not in caps:
            return min(2 * self.resolution, 96)
        return self.resolution

    def _set_res(self, v):
        self.resolution = int(v)
        self.dirty = True
        self.wantChanged.emit()

    def _touch(self, *a):
        self.dirty = True

    def _fill_backgrounds(self, keys):
        have = [(k, lab) for k, lab in BACKGROUNDS if k in keys or k == "none"]
        cur = self.bg.currentData()
        if [self.bg.itemData(i) for i in range(self.bg.count())] == [k for k, _ in have]:
            return
        self.bg.blockSignals(True)
        self.bg.clear()
        for k, lab in have:
            self.bg.addItem(lab, k)
        # prefer a scalar map the family provides over |score|
        pick = cur if cur in dict(have) else next(
            (k for k in ("energy", "log_density", "discriminator", "score") if k in keys), "none")
        self.bg.setCurrentIndex(max(0, [k for k, _ in have].index(pick)))
        self.bg.blockSignals(False)

    def on_snapshot(self, snap):
        if snap.field:
            self.field = snap.field
            self.dirty = True

    # ------------------------------------------------------------ drawing
    def _draw(self):
        f = self.field
        if f is None or "xs" not in f or getattr(self.info, "is_image", None):
            return
        keys = set(f)
        if not keys & FIELD_KEYS:
            self._show_no_field(f)
            return
        if self.no_field:
            self.no_field = False
            self.controls.setVisible(True)
            self.level.setVisible(getattr(self.info, "level", None) is not None)
            self.note.setVisible(False)
        if "true_score" in f and "score" in f:
            keys.add("error")
        self._fill_backgrounds(keys)
        self._set_title(f)
        xs, ys = np.asarray(f["xs"]), np.asarray(f["ys"])
        R = len(xs)
        dx = (xs[-1] - xs[0]) / max(R - 1, 1)
        dy = (ys[-1] - ys[0]) / max(R - 1, 1)
        gx, gy = np.meshgrid(xs, ys, indexing="xy")                       # (R, R)
        mode = "unit" if self.mode.currentIndex() == 1 else "scaled"
        lines = []
        self.empty.setVisible(False)
        score = f.get("score")
        if score is not None:
            v = scale_arrows(np.asarray(score).reshape(-1, 2), min(dx, dy), mode)
            self.arrows.setData(*arrow_segments(gx.ravel(), gy.ravel(), v[:, 0], v[:, 1]))
        else:
            self.arrows.setData([], [])
        true = f.get("true_score")
        show_true = true is not None and self.true_box.isChecked()
        if show_true:
            tv = np.asarray(true).reshape(-1, 2)
            # the same scale as the learned arrows, so lengths compare
            sv = np.asarray(score).reshape(-1, 2) if score is not None else tv
            ref = float(np.percentile(np.linalg.norm(sv, axis=1), 95)) or 1.0
            tn = np.linalg.norm(tv, axis=1, keepdims=True)
            if mode == "unit":
                t = tv / np.maximum(tn, 1e-12) * 0.8 * min(dx, dy)
            else:
                t = tv * np.minimum(tn / ref, 1.0) * 0.9 * min(dx, dy) / np.maximum(tn, 1e-12)
            self.true_arrows.setData(*arrow_segments(gx.ravel(), gy.ravel(), t[:, 0], t[:, 1]))
            if not any(it[1].text == "true score" for it in self.legend.items):
                self.legend.addItem(self.true_arrows, "true score")
        else:
            self.true_arrows.setData([], [])
            if any(it[1].text == "true score" for it in self.legend.items):
                self.legend.removeItem(self.true_arrows)
        if true is not None and score is not None:
            s, t = np.asarray(score).reshape(-1, 2), np.asarray(true).reshape(-1, 2)
            rel = math.sqrt(np.mean(np.sum((s - t) ** 2, 1)) / max(np.mean(np.sum(t ** 2, 1)), 1e-30))
            lines.append(f"relative error vs true score: {100 * rel:.0f}%")

        bg = self.bg.currentData() or "none"
        z, label = None, ""
        if bg == "score" and score is not None:
            z, label = np.log10(np.linalg.norm(np.asarray(score), axis=-1) + 1e-12), "log10 |score|"
        elif bg == "error" and score is not None and true is not None:
            z, label = np.log10(np.linalg.norm(np.asarray(score) - np.asarray(true), axis=-1) + 1e-12), \
                "log10 |learned - true|"
        elif bg in f and bg not in ("score", "xs", "ys"):
            z = np.asarray(f[bg], dtype=np.float64)
            label = dict(BACKGROUNDS)[bg]
        prob = bg == "discriminator" and z is not None and np.nanmin(z) >= 0 and np.nanmax(z) <= 1
        if bg == "discriminator":
            label = "D(x) = P(real)" if prob else "critic f(x)"
        if z is not None and z.shape == (R, R) and np.isfinite(z).any():
            z = np.nan_to_num(z, nan=np.nanmin(z))
            lo, hi = np.percentile(z, [1, 99])
            if bg == "log_density":     # show the top 12 nats: the far tail would take all the colours
                lo = max(lo, hi - 12.0)
            elif bg == "energy":
                hi = min(hi, lo + 12.0)
            elif prob:                  # a probability: 0.5 (fooled) is always the middle colour
                d = max(float(np.percentile(np.abs(z - 0.5), 99)), 0.02)
                lo, hi = 0.5 - d, 0.5 + d
            if hi <= lo:
                hi = lo + 1e-6
            # sticky colour levels: re-scale (and repaint the colour bar) only when the range
            # has moved by more than 15%, not on every field update
            old = getattr(self, "_levels", None)
            if old is not None and old[2] == label:
                span = old[1] - old[0]
                if abs(lo - old[0]) < 0.15 * span and abs(hi - old[1]) < 0.15 * span:
                    lo, hi = old[0], old[1]
            self._levels = (lo, hi, label)
            self.img.setImage(z.astype(np.float32), autoLevels=False, levels=(lo, hi))
            self.img.setRect(QtCore.QRectF(xs[0] - dx / 2, ys[0] - dy / 2, dx * R, dy * R))
            if self.cbar.levels() != (float(lo), float(hi)):
                self.cbar.setLevels((float(lo), float(hi)))
            if label != getattr(self, "_cbar_label", None):   # a new label re-lays out the plot
                self._cbar_label = label
                self.cbar.axis.setLabel(label)
            self.img.setVisible(True)
            self.cbar.setVisible(True)
        else:
            self.img.setVisible(False)
            self.cbar.setVisible(False)
        self.data.setVisible(self.data_box.isChecked())

        self.caption.setText(noising_caption(f.get("level"), getattr(self.info, "level", None) or {},
                                             f.get("alpha_sigma")))
        self.caption.setVisible(bool(self.caption.text()))
        self.text.setText("\n".join(lines))

    def _show_no_field(self, f):
        """The family computes nothing on the plane (a discrete diffusion, say): say so, show the data."""
        if not self.no_field:
            self.no_field = True
            self.controls.setVisible(False)
            self.level.setVisible(False)
            self.img.setVisible(False)
            self.cbar.setVisible(False)
            self.arrows.setData([], [])
            self.true_arrows.setData([], [])
            self.legend.setVisible(False)
            self._title = "Training data"
            self.pi.setTitle(self._title, color=theme.FG, size=theme.title_size())
            self.text.setText("")
            self.caption.setVisible(False)
            self.note.setText(f"{getattr(self.info, 'title', 'This family')} defines no field on the plane: no score, "
                              "energy, density or discriminator to draw. Shown: the training data. "
                              "Its own pictures are in Family views.")
            self.note.setVisible(True)
        self.empty.setVisible(False)
        self.data.setVisible(True)

    def _set_title(self, f):
        bg = self.bg.currentData()
        arrows = "score" in f
        # the score of the NOISED data at the slider's level: p_t (time) or p_σ (noise level)
        kind = (getattr(self.info, "level", None) or {}).get("kind")
        p = "p_σ(x)" if kind == "sigma" else "p_t(x)" if kind else "p(x)"
        if bg in (None, "score", "none", "error"):
            title = f"Score  ∇ₓ log {p}" if arrows else "Field"
        elif bg == "energy":
            title = "Energy E(x)" + ("  ·  arrows: score −∇E(x)" if arrows else "")
        elif bg == "log_density":
            title = f"Log density log {p}" + (f"  ·  arrows: score ∇ₓ log {p}" if arrows else "")
        elif bg == "discriminator":
            z = f.get("discriminator")
            prob = z is not None and np.nanmin(z) >= 0 and np.nanmax(z) <= 1
            title = ("Discriminator D(x): P(x is real)" if prob else "Critic f(x)  (higher = more real)")
        else:
            title = "Field"
        if title != getattr(self, "_title", None):
            self._title = title
            self.pi.setTitle(title, color=theme.FG, size=theme.title_size())
        has_arrows = "score" in f
        if has_arrows != getattr(self, "_legend_arrows", True):
            self._legend_arrows = has_arrows
            if has_arrows:
                self.legend.addItem(self.arrows, "model score")
            else:
                self.legend.removeItem(self.arrows)
        self.legend.setVisible(has_arrows)
        self.mode.setEnabled(has_arrows)

    def arrow_count(self) -> int:
        return len(self.arrows.xData) // 6 if self.arrows.xData is not None else 0



def noising_caption(level, level_info: dict, alpha_sigma) -> str:
    """The noised data the field is of, x_t = α x₀ + s ε in standardized units:
    VP processes (α² + s² = 1, DDPM eq. 4): x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε;
    VE (α = 1, NCSN / SMLD): x_σ = x₀ + σ ε; otherwise (sub-VP) the two numbers."""
    if level is None:
        return ""
    sigma_kind = level_info.get("kind") == "sigma"
    sym = "σ" if sigma_kind else "t"
    shown = level + time_display_offset(level_info)      # the engine's index 0..T-1 is the papers' t = 1..T
    head = f"{sym} = {shown:.3g}" if isinstance(shown, float) else f"{sym} = {shown}"
    if not alpha_sigma:
        return head
    a, s = float(alpha_sigma[0]), float(alpha_sigma[1])
    if abs(a - 1.0) < 1e-6:
        return f"x_σ = x₀ + σ·ε,  σ = {s:.3g}" + ("" if sigma_kind else f"  ({head})")
    if abs(a * a + s * s - 1.0) < 1e-3:
        return f"{head}  ·  x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε = {a:.3f}·x₀ + {s:.3f}·ε  (ᾱ_t = {a * a:.4g})"
    return f"{head}  ·  x_t = α_t·x₀ + s_t·ε = {a:.3f}·x₀ + {s:.3f}·ε"
