"""What every panel shares: the Panel interface, and fast drawing items.

A panel never talks to the session and computes nothing. The controller hands it the run's
RunInfo (reset), every Snapshot (cheap: store references) and the other message types its
registry row consumes (on_message), and the shell calls `draw()` on its frame timer; the panel
redraws only when something new arrived. `want()` says what the panel needs computed (field
resolution, sample count...), and `wantChanged` asks the controller to tell the session.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
import pyqtgraph.functions as fn
from PySide6 import QtCore, QtGui, QtWidgets

from .. import theme


class Panel(QtWidgets.QWidget):
    title = "Panel"
    wantChanged = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.info = None              # the run's engines.messages.RunInfo once it is ready
        self.dirty = False
        self.draws = 0

    def reset(self, info):
        """A new run is ready: info is an engines.messages.RunInfo (family, level, schedule, preview...)."""
        self.info = info
        self.dirty = True

    def on_snapshot(self, snap):
        pass

    def on_message(self, msg):
        """Any other message type the panel's registry row consumes (Trajectory, Progress...)."""

    def want(self) -> dict:
        return {}

    def draw(self) -> bool:
        """Redraw if anything changed; True when it drew."""
        if not self.dirty:
            return False
        self.dirty = False
        self._draw()
        self.draws += 1
        return True

    def _draw(self):
        pass


def plot_widget(title="", x="", y="", aspect=False, grid=None) -> pg.PlotWidget:
    """A labelled plot. No grid on spatial (aspect-locked) plots: an axis that draws grid
    lines covers the whole view, so every particle update would repaint the axes and their
    text (the main cost of a frame); the x/y ticks are enough there."""
    w = theme.fast_view(pg.PlotWidget())
    theme.style_plot(w.getPlotItem(), title, x, y, grid=(not aspect) if grid is None else grid)
    # a fixed axis width: an auto-sized one follows its tick labels, and with a locked aspect
    # a wider label changes the range, which changes the labels... (a re-layout every frame)
    w.getPlotItem().getAxis("left").setWidth(46)
    if aspect:
        w.setAspectLocked(True)
    w.setMinimumSize(160, 140)
    return w


def set_range_now(plot, **kw):
    """plot.setRange(**kw), with the new view transform applied at once. pyqtgraph applies it
    lazily, in the next paint's prepareForPaint; the items it moves then ask for a second paint
    of the whole plot (measured: every range change of the loss plot painted it twice)."""
    vb = plot.getViewBox()
    vb.setRange(**kw)
    vb.updateMatrix()


class Points(pg.GraphicsObject):
    """Many same-looking dots, drawn fast.

    pg.ScatterPlotItem draws a pixmap fragment per point (~40-60 ms for 20,000 points) and
    even one QPainter.drawPoints call with a wide pen costs ~40 ms there. Up to SPLAT_MIN
    points we use drawPoints (round dots); above, the points are splatted into an image of the
    exposed device pixels with numpy (a histogram, a size x size box filter and alpha
    compositing 1 - (1 - a)^count), so a frame costs ~2 ms whatever the number of points."""
    SPLAT_MIN = 2000          # above this the splat beats drawPoints (measured: 1.3 ms vs 2 ms at 3000)

    def __init__(self, color=theme.SAMPLES, alpha=170, size=3.0, static=False):
        super().__init__()
        if static:
            # a layer that rarely changes (the training data under the particles): Qt keeps
            # it as a pixmap and blits it, instead of redrawing thousands of points per frame
            self.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self._poly = None
        self._xy = None
        self._n = 0
        self._rect = QtCore.QRectF()
        self.setStyle(color, alpha, size)

    def setStyle(self, color, alpha=170, size=3.0):
        pen = QtGui.QPen(QtGui.QColor(*color[:3], alpha))
        pen.setWidthF(size)
        pen.setCosmetic(True)
        pen.setCapStyle(QtCore.Qt.PenCapStyle.SquareCap if size <= 2.5 else QtCore.Qt.PenCapStyle.RoundCap)
        self._pen = pen
        # colour of a pixel covered by k points: alpha 1 - (1 - a)^k, premultiplied BGRA
        a = 1.0 - (1.0 - alpha / 255.0) ** np.arange(64, dtype=np.float64)          # (64,)
        rgb = np.array(color[:3], np.float64)
        self._lut = np.stack([a * rgb[2], a * rgb[1], a * rgb[0], a * 255], 1).round().astype(np.uint8)
        self.update()

    def setData(self, xy):
        """xy: (N, 2) array, or None to clear."""
        self.prepareGeometryChange()
        if xy is None or len(xy) == 0:
            self._poly, self._xy, self._n, self._rect = None, None, 0, QtCore.QRectF()
            self.update()
            return
        xy = np.asarray(xy, dtype=np.float64)[:, :2]
        ok = np.isfinite(xy).all(1)
        if not ok.all():          # diverged particles are not drawn (the panel counts them)
            xy = xy[ok]
        # far-off finite points (|x| ~ 1e38) would overflow the device transform: not drawn either
        xy = xy[(np.abs(xy) < 1e15).all(1)]
        n = len(xy)
        if n == 0:
            self._poly, self._xy, self._n, self._rect = None, None, 0, QtCore.QRectF()
            self.update()
            return
        self._n = n
        if n > self.SPLAT_MIN:
            self._xy, self._poly = xy, None
        else:
            self._xy = None
            self._poly = fn.create_qpolygonf(n)
            fn.ndarray_from_qpolygonf(self._poly)[:] = xy
        if n:
            lo, hi = xy.min(0), xy.max(0)
            self._rect = QtCore.QRectF(lo[0], lo[1], max(hi[0] - lo[0], 1e-9), max(hi[1] - lo[1], 1e-9))
        self.update()

    def count(self) -> int:
        return self._n

    def boundingRect(self):
        return self._rect

    def dataBounds(self, ax, frac=1.0, orthoRange=None):
        if self._n == 0:
            return None
        r = self._rect
        return (r.left(), r.right()) if ax == 0 else (r.top(), r.bottom())

    def paint(self, p, *args):
        if self._n == 0:
            return
        dpr = _device_ratio(p)
        if self._poly is not None:
            self._dots(p, dpr)
        elif self._xy is not None:
            self._splat(p, dpr)

    @staticmethod
    def _to_device(p, xy):
        """(N, 2) item coordinates -> x (N,), y (N,) in the paint device's logical pixels."""
        tr = p.transform()
        return (tr.m11() * xy[:, 0] + tr.m21() * xy[:, 1] + tr.dx(),
                tr.m12() * xy[:, 0] + tr.m22() * xy[:, 1] + tr.dy())

    def _dots(self, p, dpr):
        """Round dots `size` logical pixels wide whatever the screen. Drawn in device space: a
        cosmetic pen's width counts device pixels (Qt ignores the device pixel ratio there), and
        under the view's scaling transform drawPoints makes dots ~3x the pen's area."""
        x, y = self._to_device(p, fn.ndarray_from_qpolygonf(self._poly))
        poly = fn.create_qpolygonf(len(x))
        dev = fn.ndarray_from_qpolygonf(poly)                # (N, 2) view of poly
        dev[:, 0], dev[:, 1] = x, y
        pen = QtGui.QPen(self._pen)
        pen.setWidthF(self._pen.widthF() * dpr)
        p.save()
        p.resetTransform()
        p.setPen(pen)
        p.drawPoints(poly)
        p.restore()

    def _splat(self, p, dpr=1.0):
        """The splat in device pixels, so that a point covers the same screen area as a dot:
        a size x size box (x sqrt(pi/4) for round dots, the same area as the disc)."""
        x, y = self._to_device(p, self._xy)
        x, y = x * dpr, y * dpr                               # (N,) device pixels
        dev = p.device()
        W0, H0 = int(dev.width() * dpr), int(dev.height() * dpr)
        size = self._pen.widthF() * dpr
        if self._pen.capStyle() == QtCore.Qt.PenCapStyle.RoundCap:
            size *= ROUND_DOT_SIDE
        s = max(1, int(round(size)))
        x0, y0 = max(int(np.floor(x.min())) - s, 0), max(int(np.floor(y.min())) - s, 0)
        x1, y1 = min(int(np.ceil(x.max())) + s, W0), min(int(np.ceil(y.max())) + s, H0)
        W, H = x1 - x0, y1 - y0
        if W <= 0 or H <= 0:
            return
        ix = x.astype(np.int64) - x0
        iy = y.astype(np.int64) - y0
        ok = (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H)
        counts = np.bincount(iy[ok] * W + ix[ok], minlength=W * H).astype(np.uint16).reshape(H, W)
        if s > 1:                                           # each point covers s x s pixels
            c = counts.copy()                               # (uint16: 4x less memory traffic)
            for k in range(1, s):
                c[:, k:] += counts[:, :-k]
            counts = c.copy()
            for k in range(1, s):
                counts[k:, :] += c[:-k, :]
            x0, y0 = x0 - s // 2, y0 - s // 2
        np.minimum(counts, len(self._lut) - 1, out=counts)
        img = np.take(self._lut, counts, axis=0)            # (H, W, 4) BGRA premultiplied; take() >> fancy indexing
        q = QtGui.QImage(img.data, W, H, 4 * W, QtGui.QImage.Format.Format_ARGB32_Premultiplied)
        q.setDevicePixelRatio(dpr)
        p.save()
        p.resetTransform()
        p.drawImage(QtCore.QPointF(x0 / dpr, y0 / dpr), q)
        p.restore()


ROUND_DOT_SIDE = math.sqrt(math.pi / 4)      # a square of this side x d has the area of a d-wide disc


def _device_ratio(p) -> float:
    """Device pixels per logical pixel of what the painter paints on (2 on a 200 % screen)."""
    try:
        return float(p.device().devicePixelRatioF())
    except AttributeError:
        return 1.0


def arrow_segments(x, y, u, v, head: float = 0.35, angle: float = 0.45):
    """Centred arrows as line pairs for one PlotCurveItem(connect='pairs'):
    a shaft from (x, y) - (u, v)/2 to (x, y) + (u, v)/2 and two head strokes. Inputs (N,);
    returns xs, ys of shape (6N,)."""
    x, y, u, v = (np.asarray(a, dtype=np.float64).ravel() for a in (x, y, u, v))
    x0, y0 = x - u / 2, y - v / 2
    x1, y1 = x + u / 2, y + v / 2
    bu, bv = -u * head, -v * head                # (N,) back along the shaft
    c, s = math.cos(angle), math.sin(angle)
    h1u, h1v = bu * c - bv * s, bu * s + bv * c   # rotated +angle
    h2u, h2v = bu * c + bv * s, -bu * s + bv * c  # rotated -angle
    xs = np.stack([x0, x1, x1, x1 + h1u, x1, x1 + h2u], 1).ravel()   # (N, 6) -> (6N,)
    ys = np.stack([y0, y1, y1, y1 + h1v, y1, y1 + h2v], 1).ravel()
    return xs, ys


def scale_arrows(vec, cell: float, mode: str = "scaled"):
    """Arrow vectors (N, 2) sized for a grid of spacing `cell`: 'scaled' maps the 95th
    percentile length to 0.9 cell (longer ones clipped there), 'unit' shows direction only."""
    vec = np.nan_to_num(np.asarray(vec, dtype=np.float64))
    n = np.linalg.norm(vec, axis=1, keepdims=True)           # (N, 1)
    if mode == "unit":
        return vec / np.maximum(n, 1e-12) * 0.8 * cell
    ref = float(np.percentile(n, 95)) if n.size else 1.0
    ref = ref if ref > 0 else 1.0
    f = np.minimum(n / ref, 1.0) * 0.9 * cell / np.maximum(n, 1e-12)
    return vec * f


def image_grid(images, nrow: int | None = None, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> one (rows*(H+pad), cols*(W+pad), 3 or 1) float image in [0, 1]."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[:, None]
    N, C, H, W = x.shape
    cols = nrow or int(math.ceil(math.sqrt(N)))
    rows = int(math.ceil(N / cols))
    x = np.clip((x + 1) / 2, 0, 1)
    ch = 3 if C == 3 else 1
    out = np.full((rows * (H + pad) + pad, cols * (W + pad) + pad, ch), 0.15, np.float32)
    for k in range(N):
        r, c = divmod(k, cols)
        img = x[k].transpose(1, 2, 0)[:, :, :ch] if C == 3 else x[k, 0][:, :, None]
        out[pad + r * (H + pad): pad + r * (H + pad) + H, pad + c * (W + pad): pad + c * (W + pad) + W] = img
    return out[::-1]     # flip rows: the y axis points up


def show_image_grid(item: pg.ImageItem, images, nrow=None):
    g = image_grid(images, nrow)
    if g.shape[2] == 1:
        item.setImage(g[:, :, 0], levels=(0, 1))
    else:
        item.setImage(g, levels=(0, 1))
    item.setRect(QtCore.QRectF(0, 0, g.shape[1], g.shape[0]))
    return g.shape


def info_text(plot: pg.PlotItem, text: str = "", anchor=(0, 0)) -> pg.TextItem:
    """A text item pinned to the view's top-left corner (re-placed on range changes)."""
    t = pg.TextItem(text, color=theme.FG, anchor=anchor)
    t.setZValue(100)
    plot.addItem(t, ignoreBounds=True)

    def place():
        (x0, x1), (y0, y1) = plot.getViewBox().viewRange()
        t.setPos(x0, y1)
    plot.getViewBox().sigRangeChanged.connect(lambda *a: place())
    place()
    return t


def centered_message(plot: pg.PlotItem) -> pg.TextItem:
    """A message shown in the middle of an empty plot ("press Play", "no field for images")."""
    t = pg.TextItem("", color=(170, 175, 185), anchor=(0.5, 0.5))
    t.setZValue(200)
    plot.addItem(t, ignoreBounds=True)

    def place():
        (x0, x1), (y0, y1) = plot.getViewBox().viewRange()
        t.setPos((x0 + x1) / 2, (y0 + y1) / 2)
    plot.getViewBox().sigRangeChanged.connect(lambda *a: place())
    place()
    return t
