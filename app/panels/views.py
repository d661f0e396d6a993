"""Family views: draws whatever Family.views() returns, by kind, one small plot per view.

Kinds (engines/families/base.py): scatter, polylines, ellipses, images, heatmap, curves,
arrows. A view is dict(kind=..., title=..., space="data"?, ...arrays). Families added later
(VAE latents, GAN generator warps, flow layers, EBM, RBM filters...) draw here without any
code in the app knowing their names.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from .. import theme
from .base import Panel, Points, arrow_segments, scale_arrows, show_image_grid

KINDS = ("scatter", "polylines", "ellipses", "images", "heatmap", "curves", "arrows")


def _nan_join(lines):
    """A list of (M_i, 2) polylines -> xs, ys joined with NaN breaks (one curve item)."""
    parts_x, parts_y = [], []
    for l in lines:
        l = np.asarray(l, dtype=np.float64).reshape(-1, 2)
        parts_x += [l[:, 0], [np.nan]]
        parts_y += [l[:, 1], [np.nan]]
    if not parts_x:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(parts_x), np.concatenate(parts_y)


def ellipse_lines(centers, covs, n_std=2.0, n=48):
    """The n_std contour of each Gaussian: centers (K, 2), covs (K, 2, 2) -> list of (n, 2)."""
    th = np.linspace(0, 2 * np.pi, n)
    circle = np.stack([np.cos(th), np.sin(th)], 1)                      # (n, 2)
    out = []
    for c, S in zip(np.asarray(centers, float), np.asarray(covs, float)):
        w, V = np.linalg.eigh((S + S.T) / 2)
        A = V * np.sqrt(np.maximum(w, 0))                               # (2, 2)
        out.append(c + n_std * circle @ A.T)
    return out


def draw_view(plot: pg.PlotItem, v: dict, data_preview=None):
    """Add the items of one view to an (empty) PlotItem. Raises ValueError on an unknown kind."""
    kind = v.get("kind")
    if kind not in KINDS:
        raise ValueError(f"unknown view kind {kind!r}; known: {', '.join(KINDS)}")
    image_like = kind in ("images",)
    plot.setAspectLocked(kind in ("scatter", "polylines", "ellipses", "arrows", "images", "heatmap"))
    if v.get("space") == "data" and data_preview is not None and not image_like and len(data_preview) \
            and np.asarray(data_preview).ndim == 2:
        d = Points(theme.DATA, alpha=60, size=2)
        d.setData(data_preview)
        d.setZValue(-5)
        plot.addItem(d)
    if kind == "scatter":
        x = np.asarray(v["x"], float).reshape(-1, 2)
        col = v.get("color")
        if col is not None and len(x) <= 20000:
            c = np.asarray(col, float).ravel()
            lo, hi = np.nanmin(c), np.nanmax(c)
            cm = pg.colormap.get(theme.HEAT_CMAP)
            brushes = [pg.mkBrush(q) for q in cm.map((c - lo) / (hi - lo + 1e-12), mode="qcolor")]
            plot.addItem(pg.ScatterPlotItem(x[:, 0], x[:, 1], size=4, pen=None, brush=brushes))
        else:
            p = Points(theme.SAMPLES, alpha=180, size=3)
            p.setData(x)
            plot.addItem(p)
    elif kind == "polylines":
        xs, ys = _nan_join(v.get("lines", []))
        plot.addItem(pg.PlotCurveItem(xs, ys, pen=pg.mkPen(*theme.SAMPLES, 200), connect="finite"))
    elif kind == "ellipses":
        centers = np.asarray(v["centers"], float).reshape(-1, 2)
        covs = np.asarray(v["covs"], float).reshape(-1, 2, 2)
        w = np.asarray(v.get("weights", np.ones(len(centers))), float).ravel()
        w = w / (w.max() + 1e-12)
        for c, l, wk in zip(centers, ellipse_lines(centers, covs), w):
            plot.addItem(pg.PlotCurveItem(l[:, 0], l[:, 1], pen=pg.mkPen(*theme.SAMPLES, int(60 + 195 * wk), width=2)))
        plot.addItem(pg.ScatterPlotItem(centers[:, 0], centers[:, 1], size=6, pen=None,
                                        brush=pg.mkBrush(*theme.SAMPLES, 230)))
    elif kind == "images":
        item = pg.ImageItem()
        plot.addItem(item)
        show_image_grid(item, v["images"], v.get("nrow"))
        plot.hideAxis("left")
        plot.hideAxis("bottom")
    elif kind == "heatmap":
        xs, ys = np.asarray(v["xs"], float), np.asarray(v["ys"], float)
        z = np.nan_to_num(np.asarray(v["z"], float))
        item = pg.ImageItem(z.astype(np.float32))
        item.setColorMap(pg.colormap.get(theme.HEAT_CMAP))
        dx = (xs[-1] - xs[0]) / max(len(xs) - 1, 1)
        dy = (ys[-1] - ys[0]) / max(len(ys) - 1, 1)
        item.setRect(QtCore.QRectF(xs[0] - dx / 2, ys[0] - dy / 2, dx * len(xs), dy * len(ys)))
        item.setZValue(-10)
        plot.addItem(item)
    elif kind == "curves":
        theme.legend(plot, (-5, 5))
        for i, (name, (x, y)) in enumerate(dict(v["curves"]).items()):
            plot.addItem(pg.PlotDataItem(np.asarray(x, float), np.asarray(y, float),
                                         pen=pg.mkPen(*theme.series_color(i), width=2), name=str(name)))
    elif kind == "arrows":
        x = np.asarray(v["x"], float).reshape(-1, 2)
        vec = np.asarray(v["v"], float).reshape(-1, 2)
        ext = float(np.ptp(x, axis=0).max()) if len(x) > 1 else 1.0
        s = scale_arrows(vec, 0.08 * ext if ext > 0 else 0.1)
        c = x + s / 2                                  # arrows start at the points
        plot.addItem(pg.ScatterPlotItem(x[:, 0], x[:, 1], size=4, pen=None, brush=pg.mkBrush(*theme.SAMPLES, 200)))
        plot.addItem(pg.PlotCurveItem(*arrow_segments(c[:, 0], c[:, 1], s[:, 0], s[:, 1]),
                                      pen=pg.mkPen(*theme.MODEL, 200), connect="pairs"))
    if v.get("x_label"):
        plot.setLabel("bottom", v["x_label"])
    if v.get("y_label"):
        plot.setLabel("left", v["y_label"])


class ViewsPanel(Panel):
    title = "Family views"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.views: dict | None = None
        self._layout_key = None
        self.plots: dict[str, pg.PlotItem] = {}
        self.glw = theme.fast_view(pg.GraphicsLayoutWidget())
        self.glw.setMinimumSize(160, 140)
        self.note = QtWidgets.QLabel("")
        self.note.setWordWrap(True)
        self.note.setObjectName("hint")
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.glw, 1)
        lay.addWidget(self.note)
        self.n = 500

    def reset(self, info):
        super().reset(info)
        self.views = None
        self._layout_key = None
        self.glw.clear()
        self.plots = {}
        self.note.setText("Waiting for the family's pictures…")

    def want(self):
        return dict(views=dict(n=self.n))

    def on_snapshot(self, snap):
        if snap.views is not None:
            self.views = snap.views
            self.dirty = True

    def _draw(self):
        views = self.views or {}
        if not views:
            self.glw.clear()
            self.plots = {}
            self._layout_key = None
            self.note.setText(f"{self.info.get('title', 'This family')} draws no extra views. Families such as "
                              "VAE (latent codes), GAN (generator warp), flows (layer warps), EBM and RBM draw "
                              "their own pictures here.")
            return
        key = tuple((k, v.get("kind")) for k, v in views.items())
        if key != self._layout_key:
            self.glw.clear()
            self.plots = {}
            # lay the plots out to suit the panel's shape
            n = len(views)
            wide = self.glw.width() >= 1.3 * self.glw.height()
            cols = int(math.ceil(math.sqrt(n))) if n > 2 else (n if wide else 1)
            for i, (name, v) in enumerate(views.items()):
                p = self.glw.addPlot(row=i // cols, col=i % cols)
                title = v.get("title") or name
                theme.style_plot(p, title if len(title) <= 34 else name)
                p.getAxis("left").setWidth(36)
                self.plots[name] = p
            self._layout_key = key
            self._titles = "  ·  ".join(f"<b>{k}</b>: {v['title']}" for k, v in views.items()
                                        if len(v.get("title") or "") > 34)
        errors = []
        for name, v in views.items():
            p = self.plots[name]
            p.clear()
            if p.legend is not None:
                p.legend.clear()
            try:
                draw_view(p, v, self.info.get("preview"))
            except Exception as e:   # one bad view must not take the others down
                errors.append(f"{name}: {e}")
        self.note.setText("; ".join(errors) if errors else getattr(self, "_titles", ""))
