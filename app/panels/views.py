"""Family views: draws whatever Family.views() returns, by kind, one small plot per view.

Kinds (engines/families/base.py): scatter, polylines, ellipses, images, heatmap, curves,
arrows. A view is dict(kind=..., title=..., space="data"?, ...arrays). Families added later
(VAE latents, GAN generator warps, flow layers, EBM, RBM filters...) draw here without any
code in the app knowing their names.

Two sliders appear when the views call for them: a noise-level slider (kept in step with the
Field panel's) when the family has noise levels, and a layer slider when a view carries
`layer` / `n_layers` (a flow's warp after k of its K layers): it sends request["layer"].
The plots are laid out to give every view as much room as its shape needs (an image grid is
wide, a 2D scatter square), and re-laid out when the panel changes shape.
"""
from __future__ import annotations

import html
import math
import textwrap

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from .. import theme
from .base import Panel, Points, arrow_segments, scale_arrows, show_image_grid, set_range_now
from .field import LevelSlider

KINDS = ("scatter", "polylines", "ellipses", "images", "heatmap", "curves", "arrows")
SPATIAL = ("scatter", "polylines", "ellipses", "arrows")


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


def view_aspect(v: dict) -> float:
    """The width / height a view wants: an image grid's own shape, about square for 2D
    pictures, a little wide for curves."""
    kind = v.get("kind")
    if kind == "images":
        x = np.asarray(v.get("images"))
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or len(x) == 0:
            return 1.0
        n, _, h, w = x.shape
        cols = int(v.get("nrow") or math.ceil(math.sqrt(n)))
        rows = int(math.ceil(n / max(cols, 1)))
        return (cols * (w + 1) + 1) / (rows * (h + 1) + 1)
    if kind == "curves":
        return 1.5
    return 1.1      # square data area plus the left axis


def best_grid(aspects, width: float, height: float, title_px: float = 36.0) -> int:
    """How many columns to lay len(aspects) plots out in: the one that maximizes the geometric
    mean of the plots' areas (each keeps its aspect inside its cell, minus a title line), so
    no view is sacrificed to make another huge."""
    n = len(aspects)
    if n <= 1:
        return 1
    best, best_cols = -math.inf, 1
    for cols in range(1, n + 1):
        rows = math.ceil(n / cols)
        cw, ch = max(width / cols - 36, 1.0), max(height / rows - title_px, 1.0)   # minus the left axis
        score = sum(math.log(min(cw, ch * a) * min(cw / a, ch)) for a in aspects) / n
        if score > best + 0.05:       # prefer fewer columns unless clearly better
            best, best_cols = score, cols
    return best_cols


def _wrap_title(title: str, chars: int) -> str:
    lines = textwrap.wrap(title, max(chars, 12))
    if len(lines) > 2:
        lines = lines[:2]
        lines[1] = lines[1][: max(chars - 1, 8)] + "…"
    return "<br>".join(html.escape(l) for l in lines)


def colour_scale(plot: pg.PlotItem, lo: float, hi: float, label: str = ""):
    """A colour bar beside the plot for what the colours mean (one per plot, kept across redraws:
    clear() empties the view box, not the layout the bar sits in)."""
    bar = getattr(plot, "_colour_bar", None)
    if bar is None:
        bar = pg.ColorBarItem(values=(0, 1), colorMap=theme.HEAT_CMAP, interactive=False, width=10)
        plot.layout.addItem(bar, 2, 5)
        plot._colour_bar = bar
    bar.setLevels((lo, hi if hi > lo else lo + 1e-6))
    if label != getattr(plot, "_colour_label", None):
        plot._colour_label = label
        bar.axis.setLabel(label)
    bar.setVisible(True)


_heat_brushes: list = []


def heat_brushes() -> list:
    """64 brushes along the heat colour map (made once, after the QApplication exists)."""
    if not _heat_brushes:
        cm = pg.colormap.get(theme.HEAT_CMAP)
        _heat_brushes.extend(pg.mkBrush(q) for q in cm.map(np.linspace(0, 1, 64), mode="qcolor"))
    return _heat_brushes


def view_signature(v: dict) -> tuple:
    """What fixes the items a view is drawn with: its kind, its space and labels, whether a
    scatter is coloured, how many ellipses, which curves. Views with the same signature reuse
    their plot items and only get new data (setData / setImage): building pyqtgraph items, a
    legend and a colour bar on every snapshot cost tens of ms a draw."""
    kind = v.get("kind")
    if kind == "scatter":
        n = int(np.asarray(v["x"]).size // 2)
        extra = v.get("color") is not None and n <= 20000
    elif kind == "ellipses":
        extra = int(np.asarray(v["centers"]).size // 2)
    elif kind == "curves":
        extra = tuple(str(name) for name in dict(v["curves"]))
    else:
        extra = None
    return (kind, v.get("space"), extra, v.get("x_label"), v.get("y_label"))


def draw_view(plot: pg.PlotItem, v: dict, data_preview=None, bounds=None):
    """Draw one view on a PlotItem: its items are built the first time (or when the view's
    signature changes) and only refilled with the view's data on later calls.
    Raises ValueError on an unknown kind (the plot is then left empty, to be rebuilt).
    bounds (x0, x1, y0, y1): the data's view box, used for views in data coordinates."""
    kind = v.get("kind")
    if kind not in KINDS:
        forget_view(plot)
        raise ValueError(f"unknown view kind {kind!r}; known: {', '.join(KINDS)}")
    sig = view_signature(v)
    state = getattr(plot, "_view_state", None)
    if state is None or state[0] != sig:
        forget_view(plot)
        items = _build_view(plot, v, data_preview)
        plot._view_state = (sig, items)
    else:
        items = state[1]
    try:
        _fill_view(plot, v, items)
    except Exception:
        forget_view(plot)       # half-filled items: start afresh next time
        raise
    if v.get("space") == "data" and bounds and kind in SPATIAL:
        # the data's own box, the same as the Field panel's: the picture does not jump about
        # as the view updates, and it lines up with the other panels
        set_range_now(plot, xRange=bounds[:2], yRange=bounds[2:], padding=0.02)


def forget_view(plot: pg.PlotItem):
    """Empty the plot and drop its cached items."""
    plot.clear()
    if plot.legend is not None:
        plot.legend.clear()
    if getattr(plot, "_colour_bar", None) is not None:
        plot._colour_bar.setVisible(False)               # shown again if the next view has colours
    plot._view_state = None


def _build_view(plot: pg.PlotItem, v: dict, data_preview) -> dict:
    """The items of one view, added to the (empty) plot, with no data yet: name -> item(s)."""
    kind = v.get("kind")
    image_like = kind == "images"
    plot.setAspectLocked(kind in ("scatter", "polylines", "ellipses", "arrows", "images", "heatmap"))
    for ax in ("left", "bottom"):
        plot.showAxis(ax, not image_like)
    in_data = v.get("space") == "data"
    if in_data and data_preview is not None and not image_like and len(data_preview) \
            and np.asarray(data_preview).ndim == 2:
        d = Points(theme.DATA, alpha=60, size=2)
        d.setData(np.asarray(data_preview)[:1500])      # the run's data: fixed for the run
        d.setZValue(-5)
        plot.addItem(d)
    items = {}
    if kind == "scatter":
        if view_signature(v)[2]:                          # coloured points
            items["points"] = pg.ScatterPlotItem(size=5, pen=None)
        else:
            items["points"] = Points(theme.SAMPLES, alpha=180, size=3)
    elif kind == "polylines":
        items["lines"] = pg.PlotCurveItem(pen=pg.mkPen(*theme.SAMPLES, 210), connect="finite")
    elif kind == "ellipses":
        K = view_signature(v)[2]
        items["contours"] = [pg.PlotCurveItem() for _ in range(2 * K)]     # 1 sd then 2 sd, per component
        items["centers"] = pg.ScatterPlotItem(size=7, pen=pg.mkPen("k"), brush=pg.mkBrush(*theme.SAMPLES, 240))
    elif kind == "images":
        items["image"] = pg.ImageItem()
    elif kind == "heatmap":
        item = pg.ImageItem()
        item.setColorMap(pg.colormap.get(theme.HEAT_CMAP))
        item.setZValue(-10)
        items["image"] = item
    elif kind == "curves":
        theme.legend(plot, (-5, 5))
        items["curves"] = {name: pg.PlotDataItem(pen=pg.mkPen(*theme.series_color(i), width=2), name=name)
                           for i, name in enumerate(view_signature(v)[2])}
    elif kind == "arrows":
        items["points"] = pg.ScatterPlotItem(size=4, pen=None, brush=pg.mkBrush(*theme.SAMPLES, 220))
        items["arrows"] = pg.PlotCurveItem(pen=pg.mkPen(*theme.MODEL, 200), connect="pairs")
    for it in items.values():
        for one in (it.values() if isinstance(it, dict) else it if isinstance(it, list) else [it]):
            plot.addItem(one)
    if in_data and kind in SPATIAL and not image_like:      # data coordinates, as on the Field panel
        v = {"x_label": "x₁", "y_label": "x₂", **v}
    if v.get("x_label"):
        plot.setLabel("bottom", v["x_label"])
    if v.get("y_label"):
        plot.setLabel("left", v["y_label"])
    return items


def _fill_view(plot: pg.PlotItem, v: dict, items: dict):
    """Put the view's arrays into the items _build_view made for it."""
    kind = v.get("kind")
    if kind == "scatter":
        x = np.asarray(v["x"], float).reshape(-1, 2)
        if isinstance(items["points"], Points):
            items["points"].setData(x)
        else:
            c = np.nan_to_num(np.asarray(v["color"], float).ravel())
            lo, hi = (float(c.min()), float(c.max())) if c.size else (0.0, 1.0)
            # a palette of shared brushes: per-point QBrush objects made setData ~3x slower
            # (pyqtgraph caches a symbol per distinct brush), and 64 shades are plenty to read
            palette = heat_brushes()
            level = np.clip(((c - lo) / (hi - lo + 1e-12) * (len(palette) - 1)).round(), 0, None).astype(int)
            items["points"].setData(x[:, 0], x[:, 1], brush=[palette[k] for k in level])
            colour_scale(plot, lo, hi, v.get("color_label", ""))
    elif kind == "polylines":
        items["lines"].setData(*_nan_join(v.get("lines", [])))
    elif kind == "ellipses":
        centers = np.asarray(v["centers"], float).reshape(-1, 2)
        covs = np.asarray(v["covs"], float).reshape(-1, 2, 2)
        w = np.asarray(v.get("weights", np.ones(len(centers))), float).ravel()
        w = w / (w.max() + 1e-12)
        curves = iter(items["contours"])
        for n_std, width in ((1.0, 2), (2.0, 1)):
            for l, wk in zip(ellipse_lines(centers, covs, n_std), w):
                next(curves).setData(l[:, 0], l[:, 1], pen=pg.mkPen(*theme.SAMPLES, int(70 + 185 * wk), width=width))
        items["centers"].setData(centers[:, 0], centers[:, 1])
    elif kind == "images":
        item = items["image"]
        show_image_grid(item, v["images"], v.get("nrow"))
        set_range_now(plot, xRange=(0, item.width()), yRange=(0, item.height()), padding=0.01)
    elif kind == "heatmap":
        xs, ys = np.asarray(v["xs"], float), np.asarray(v["ys"], float)
        z = np.nan_to_num(np.asarray(v["z"], float))
        lo, hi = (float(z.min()), float(z.max())) if z.size else (0.0, 1.0)
        item = items["image"]
        item.setImage(z.astype(np.float32), levels=(lo, hi if hi > lo else lo + 1e-6))
        dx = (xs[-1] - xs[0]) / max(len(xs) - 1, 1)
        dy = (ys[-1] - ys[0]) / max(len(ys) - 1, 1)
        item.setRect(QtCore.QRectF(xs[0] - dx / 2, ys[0] - dy / 2, dx * len(xs), dy * len(ys)))
        colour_scale(plot, lo, hi, v.get("color_label", ""))
    elif kind == "curves":
        for name, (x, y) in dict(v["curves"]).items():
            items["curves"][str(name)].setData(np.asarray(x, float), np.asarray(y, float))
    elif kind == "arrows":
        x = np.asarray(v["x"], float).reshape(-1, 2)
        vec = np.asarray(v["v"], float).reshape(-1, 2)
        ext = float(np.ptp(x, axis=0).max()) if len(x) > 1 else 1.0
        s = scale_arrows(vec, 0.08 * ext if ext > 0 else 0.1)
        c = x + s / 2                                  # arrows start at the points
        items["points"].setData(x[:, 0], x[:, 1])
        items["arrows"].setData(*arrow_segments(c[:, 0], c[:, 1], s[:, 0], s[:, 1]))


class ViewsPanel(Panel):
    title = "Family views"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.views: dict | None = None
        self.received = False          # a snapshot with views has come in for this run
        self._layout_key = None
        self._size_key = None
        self.plots: dict[str, pg.PlotItem] = {}
        self.glw = theme.fast_view(pg.GraphicsLayoutWidget())
        self.glw.setMinimumSize(160, 140)
        self.message = QtWidgets.QLabel("")
        self.message.setWordWrap(True)
        self.message.setObjectName("hint")
        self.message.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.message.setVisible(False)
        self.note = QtWidgets.QLabel("")
        self.note.setWordWrap(True)
        self.note.setObjectName("hint")

        # noise level (mirrors the Field panel's slider) and flow layer
        self.level = LevelSlider()
        self.level.set_level(None)
        self.level.valueChanged.connect(lambda v: self.wantChanged.emit())
        self.layer_box = QtWidgets.QWidget()
        self.layer = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.layer.setRange(0, 1)
        self.layer.setToolTip("How many of the flow's K inverse layers the base-space grid has been pushed\n"
                              "through: 0 = the Gaussian base space, K = the data space (x = f⁻¹(z))")
        self.layer_label = QtWidgets.QLabel("")
        self.layer_label.setMinimumWidth(64)
        self.layer.valueChanged.connect(self._layer_changed)
        ll = QtWidgets.QHBoxLayout(self.layer_box)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(QtWidgets.QLabel("layer"))
        ll.addWidget(self.layer, 1)
        ll.addWidget(self.layer_label)
        self.layer_box.setVisible(False)
        self._layer_active = False

        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.level)
        lay.addWidget(self.layer_box)
        lay.addWidget(self.glw, 1)
        lay.addWidget(self.message, 1)
        lay.addWidget(self.note)
        self.n = 500
        self.level_elsewhere = None    # callable: is a noise-level slider already on screen elsewhere?

    def reset(self, info):
        super().reset(info)
        self.views = None
        self.received = False
        self._layout_key = None
        self.glw.clear()
        self.plots = {}
        self.level.set_level(info.level)
        self.level.setVisible(False)               # until the family's views show up
        self.layer_box.setVisible(False)
        self._layer_active = False
        self._show_message("Waiting for the family's pictures…")
        self.note.setText("")

    def want(self):
        w = dict(n=self.n)
        if getattr(self.info, "level", None) is not None:
            w["level"] = self.level.value()       # the noise level shared with the Field panel
        if self._layer_active:
            w["layer"] = int(self.layer.value())
        return dict(views=w)

    def on_snapshot(self, snap):
        if snap.views is not None:
            self.views = snap.views
            self.received = True
            self.dirty = True

    def has_views(self) -> bool:
        return bool(self.views)

    def _layer_changed(self, v):
        self.layer_label.setText(f"{v} of {self.layer.maximum()}")
        if self._layer_active:
            self.wantChanged.emit()

    def _show_message(self, text):
        self.message.setText(text)
        self.message.setVisible(bool(text))
        self.glw.setVisible(not text)

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        self.dirty = True          # a new shape may want another arrangement of the plots

    def _sync_controls(self, views):
        # the layer slider: views that carry n_layers (a flow's layer-by-layer warp)
        nl = next((v for v in views.values() if "n_layers" in v), None)
        if nl is not None:
            K = int(nl["n_layers"])
            if not self._layer_active or self.layer.maximum() != K:
                self.layer.blockSignals(True)
                self.layer.setRange(0, K)
                self.layer.setValue(int(nl.get("layer", K)))
                self.layer.blockSignals(False)
                self._layer_active = True
                self.layer_label.setText(f"{self.layer.value()} of {K}")
            self.layer_box.setVisible(True)
        else:
            self.layer_box.setVisible(False)
            self._layer_active = False
        # the noise-level slider: here only when the Field panel does not show one already
        # (images, a family without a field, a closed Field panel)
        elsewhere = self.level_elsewhere() if self.level_elsewhere is not None else False
        self.level.setVisible(getattr(self.info, "level", None) is not None and not elsewhere)

    def _draw(self):
        views = self.views or {}
        if not views:
            self.glw.clear()
            self.plots = {}
            self._layout_key = None
            self.level.setVisible(False)
            self.layer_box.setVisible(False)
            if self.received or getattr(self.info, "trainable", None) is False:
                self._show_message(f"{getattr(self.info, 'title', 'This family')} draws no pictures of its own: "
                                   "see the Field, Particles and Samples panels.\n\nFamilies such as the VAE "
                                   "(latent codes), GANs (generator warp), flows (layer by layer), EBMs (MCMC "
                                   "chains), RBMs (filters) and DDPM on images draw theirs here.")
            else:
                self._show_message("Waiting for the family's pictures… (they appear once training has started)")
            self.note.setText("")
            return
        self._show_message("")
        self._sync_controls(views)
        key = tuple((k, v.get("kind")) for k, v in views.items())
        W, H = max(self.glw.width(), 50), max(self.glw.height(), 50)
        aspects = [view_aspect(v) for v in views.values()]
        cols = best_grid(aspects, W, H)
        size_key = (cols, round(W / 40), round(H / 40))
        if key != self._layout_key or size_key != self._size_key:
            self.glw.clear()
            self.plots = {}
            chars = int((W / cols - 30) / (7.5 * theme.font_scale()))     # ~7.5 px a character at zoom 1
            long_titles = []
            for i, (name, v) in enumerate(views.items()):
                p = self.glw.addPlot(row=i // cols, col=i % cols)
                title = str(v.get("title") or name)
                shown = _wrap_title(title, chars)
                if len(textwrap.wrap(title, max(chars, 12))) > 2:
                    long_titles.append(f"<b>{html.escape(name)}</b>: {html.escape(title)}")
                theme.style_plot(p, shown, grid=v.get("kind") == "curves")
                p.setTitle(shown, color=theme.FG, size=theme.title_size(0.9))
                p.getAxis("left").setWidth(34)
                p.setToolTip(title)
                self.plots[name] = p
            self._layout_key, self._size_key = key, size_key
            self._titles = "  ·  ".join(long_titles)
        errors = []
        for name, v in views.items():
            p = self.plots[name]         # its items are reused while the view keeps its signature
            try:
                draw_view(p, v, getattr(self.info, "preview", None), getattr(self.info, "bounds", None))
            except Exception as e:   # one bad view must not take the others down
                errors.append(f"{name}: {e}")
        self.note.setText("; ".join(errors) if errors else getattr(self, "_titles", ""))
