"""Themes: dark, light and a high-contrast light one for projectors; widget style sheet,
pyqtgraph defaults, plot colours, and a zoom factor for text and lines.

Every panel takes its colours from here so curves, data and samples look the same in every
view (data is always blue, samples always orange, the true score always green). The module
constants (BG, FG, MODEL, ...) hold the CURRENT theme: `apply` rebinds them, so widgets built
afterwards get the new colours, and `restyle(root, old)` recolours the plots already built.
"System" follows the operating system's colour scheme (QStyleHints.colorScheme, Qt >= 6.5).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from engines.resources import resource_path

RESOURCES = str(resource_path())        # style sheets, presets: beside app/ in a checkout or a wheel


@dataclass(frozen=True)
class Palette:
    name: str
    dark: bool
    qss: str                    # style sheet file in resources/
    bg: str                     # plot background
    fg: str                     # axis text, titles
    window: str
    text: str
    base: str
    alt_base: str
    button: str
    highlight: str
    tooltip: str
    disabled: str
    data: tuple                 # training data points
    samples: tuple              # generated samples / particles
    true: tuple                 # analytic (true) score
    model: tuple                # learned arrows
    marker: tuple               # current-time marker
    legend_brush: tuple
    legend_pen: tuple
    grid: float                 # grid alpha
    line_scale: float = 1.0     # lines and points are this much thicker (contrast theme)
    font_scale: float = 1.0


PALETTES = {
    "dark": Palette("dark", True, "style.qss", bg="#1b1d23", fg="#c8ccd4", window="#23262e", text="#dfe2e8",
                    base="#1b1d23", alt_base="#2a2d36", button="#2c3039", highlight="#3d7be0",
                    tooltip="#2f333d", disabled="#6b707a", data=(120, 160, 220), samples=(255, 150, 60),
                    true=(90, 220, 120), model=(240, 240, 240), marker=(255, 80, 80),
                    legend_brush=(27, 29, 35, 210), legend_pen=(70, 75, 88), grid=0.15),
    "light": Palette("light", False, "style_light.qss", bg="#ffffff", fg="#30343b", window="#f3f4f6",
                     text="#1d2026", base="#ffffff", alt_base="#eceef2", button="#e6e8ec", highlight="#2f6fd6",
                     tooltip="#ffffe8", disabled="#9a9ea6", data=(70, 110, 190), samples=(225, 110, 10),
                     true=(0, 140, 70), model=(35, 35, 40), marker=(210, 30, 30),
                     legend_brush=(255, 255, 255, 220), legend_pen=(180, 184, 192), grid=0.2),
    # projector: pure black on white, saturated colours, thicker lines and bigger text
    "contrast": Palette("contrast", False, "style_light.qss", bg="#ffffff", fg="#000000", window="#ffffff",
                        text="#000000", base="#ffffff", alt_base="#f0f0f0", button="#ececec",
                        highlight="#0050c8", tooltip="#ffffe0", disabled="#707070", data=(0, 70, 200),
                        samples=(230, 90, 0), true=(0, 130, 0), model=(0, 0, 0), marker=(220, 0, 0),
                        legend_brush=(255, 255, 255, 235), legend_pen=(0, 0, 0), grid=0.3,
                        line_scale=1.8, font_scale=1.35),
}

CURRENT = PALETTES["dark"]
ZOOM = 1.0                      # Ctrl +/-: text and lines; multiplies the palette's own scales

BG, FG, GRID = CURRENT.bg, CURRENT.fg, CURRENT.grid
DATA, SAMPLES, TRUE, MODEL, MARKER = CURRENT.data, CURRENT.samples, CURRENT.true, CURRENT.model, CURRENT.marker
LEGEND_BRUSH = CURRENT.legend_brush
# curve colours for named series (losses, schedule curves), colour-blind friendly (Okabe-Ito);
# the yellow and the grey are swapped for darker tones on light backgrounds
SERIES_DARK = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
               (213, 94, 0), (204, 121, 167), (200, 200, 200)]
SERIES_LIGHT = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (180, 160, 0), (0, 114, 178),
                (213, 94, 0), (204, 121, 167), (90, 90, 90)]
SERIES = SERIES_DARK

HEAT_CMAP = "viridis"
BASE_TITLE_PT = 10.0


def system_scheme() -> str:
    """'dark' or 'light' from the OS (Qt >= 6.5); 'dark' when unknown (the app's classic look)."""
    app = QtGui.QGuiApplication.instance()
    hints = app.styleHints() if app is not None else None
    scheme = getattr(hints, "colorScheme", None)
    if scheme is None:
        return "dark"
    value = scheme()
    return "light" if value == QtCore.Qt.ColorScheme.Light else "dark"


def resolve(choice: str) -> Palette:
    """'system' | 'dark' | 'light' | 'contrast' -> a Palette."""
    if choice == "system":
        choice = system_scheme()
    if choice not in PALETTES:
        raise ValueError(f"theme {choice!r}: choose system, {', '.join(PALETTES)}")
    return PALETTES[choice]


def line_scale() -> float:
    return CURRENT.line_scale * ZOOM


def font_scale() -> float:
    return CURRENT.font_scale * ZOOM


def title_size(scale: float = 1.0) -> str:
    """Plot titles: 10 pt (x scale) at zoom 1, larger with the zoom and the projector theme."""
    return f"{BASE_TITLE_PT * scale * font_scale():.0f}pt"


def legend(plot: pg.PlotItem, offset=(-5, -5)):
    return plot.addLegend(offset=offset, labelTextColor=FG, brush=LEGEND_BRUSH, pen=CURRENT.legend_pen)


def series_color(i: int):
    return SERIES[i % len(SERIES)]


def setup_pyqtgraph():
    pg.setConfigOptions(antialias=False, background=BG, foreground=FG, imageAxisOrder="row-major")


def fast_view(view):
    """QGraphicsView settings for live plots: no 2-pixel antialiasing margin around update
    rectangles (antialiasing is off), which otherwise spill every data update into the axes."""
    view.setOptimizationFlag(QtWidgets.QGraphicsView.OptimizationFlag.DontAdjustForAntialiasing, True)
    return view


def style_sheet(palette: Palette | None = None) -> str:
    path = os.path.join(RESOURCES, (palette or CURRENT).qss)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def _bind(palette: Palette):
    """Rebind the module constants that panels read when they build their items."""
    global CURRENT, BG, FG, GRID, DATA, SAMPLES, TRUE, MODEL, MARKER, LEGEND_BRUSH, SERIES
    CURRENT = palette
    BG, FG, GRID = palette.bg, palette.fg, palette.grid
    DATA, SAMPLES, TRUE, MODEL, MARKER = palette.data, palette.samples, palette.true, palette.model, palette.marker
    LEGEND_BRUSH = palette.legend_brush
    SERIES = SERIES_DARK if palette.dark else SERIES_LIGHT


_BASE_FONT: dict = {}


def apply(app, choice: str = "dark", zoom: float | None = None) -> Palette:
    """Fusion style + the theme's palette + style sheet + font size (the palette covers what the
    sheet doesn't). Returns the palette now in use."""
    global ZOOM
    if zoom is not None:
        ZOOM = min(max(float(zoom), 0.5), 3.0)
    palette = resolve(choice)
    _bind(palette)
    setup_pyqtgraph()
    app.setStyle("Fusion")
    pal = QtGui.QPalette()
    c = QtGui.QColor
    roles = QtGui.QPalette.ColorRole
    for role, colour in ((roles.Window, palette.window), (roles.WindowText, palette.text),
                         (roles.Base, palette.base), (roles.AlternateBase, palette.alt_base),
                         (roles.ToolTipBase, palette.tooltip), (roles.ToolTipText, palette.text),
                         (roles.Text, palette.text), (roles.Button, palette.button),
                         (roles.ButtonText, palette.text), (roles.Highlight, palette.highlight),
                         (roles.HighlightedText, "#ffffff"), (roles.PlaceholderText, palette.disabled)):
        pal.setColor(role, c(colour))
    for role in (roles.Text, roles.ButtonText, roles.WindowText):
        pal.setColor(QtGui.QPalette.ColorGroup.Disabled, role, c(palette.disabled))
    app.setPalette(pal)
    if "pt" not in _BASE_FONT:
        _BASE_FONT["pt"] = app.font().pointSizeF() if app.font().pointSizeF() > 0 else 9.0
    font = app.font()
    font.setPointSizeF(_BASE_FONT["pt"] * font_scale())
    app.setFont(font)
    app.setStyleSheet(style_sheet(palette))
    return palette


def follow_system(app, on_change):
    """Call on_change() when the OS switches between light and dark (Qt >= 6.5)."""
    hints = app.styleHints()
    signal = getattr(hints, "colorSchemeChanged", None)
    if signal is not None:
        signal.connect(lambda *_: on_change())


def style_plot(plot: pg.PlotItem, title: str = "", x: str = "", y: str = "", grid: bool = True):
    """Title, axis labels and a light grid: every plot in the app is labelled."""
    if title:
        plot.setTitle(title, color=FG, size=title_size())
    if x:
        plot.setLabel("bottom", x)
    if y:
        plot.setLabel("left", y)
    if grid:
        plot.showGrid(x=True, y=True, alpha=GRID)
    for name in ("left", "bottom", "right", "top"):
        # ticks point out of the plot: an inward tick makes the axis' bounding rect reach into
        # the view, and then every update of the data repaints the axis and its labels too;
        # a repaint that does happen blits a cached pixmap instead of re-rendering the text
        ax = plot.getAxis(name)
        ax.setStyle(tickLength=5)
        ax.enableAutoSIPrefix(False)        # "(x0.001)" scaling confuses more than it helps
        ax.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)
    plot.getViewBox().setMenuEnabled(True)
    return plot


# ---------------------------------------------------------------------------- live restyling
def _role_map(old: Palette, new: Palette) -> dict:
    """rgb of an old theme colour -> the new theme's colour in the same role."""
    roles = {old.data: new.data, old.samples: new.samples, old.true: new.true, old.model: new.model,
             old.marker: new.marker}
    old_series = SERIES_DARK if old.dark else SERIES_LIGHT
    new_series = SERIES_DARK if new.dark else SERIES_LIGHT
    roles.update({a: b for a, b in zip(old_series, new_series) if a not in roles})
    fg_old, fg_new = QtGui.QColor(old.fg), QtGui.QColor(new.fg)
    roles[(fg_old.red(), fg_old.green(), fg_old.blue())] = (fg_new.red(), fg_new.green(), fg_new.blue())
    return {tuple(k[:3]): tuple(v[:3]) for k, v in roles.items()}


def _recolour(colour: QtGui.QColor, roles: dict) -> QtGui.QColor:
    new = roles.get((colour.red(), colour.green(), colour.blue()))
    return QtGui.QColor(*new, colour.alpha()) if new else colour


def _base_width(item, width: float) -> float:
    """The width an item was built with (panels build at scale 1); remembers the scale applied."""
    applied = getattr(item, "_theme_scale", 1.0)
    try:
        item._theme_scale = line_scale()
    except AttributeError:
        pass
    return width / applied


def _repen(pen: QtGui.QPen, roles: dict, item) -> QtGui.QPen:
    """A copy of pen in the new colours, width = the width it was built with x the line scale."""
    pen = QtGui.QPen(pen)
    pen.setColor(_recolour(pen.color(), roles))
    if pen.widthF() > 0:                         # 0 = Qt's one-pixel cosmetic pen: stays hairline
        pen.setWidthF(_base_width(item, pen.widthF()) * line_scale())
    return pen


def restyle(root: QtWidgets.QWidget, old: Palette, only_new: bool = False) -> int:
    """Recolour and re-thicken the plots already built under `root` after `apply` switched the
    theme or the zoom: backgrounds, axes, titles, legends, text items, curves, points and
    markers whose colour has a role in the old theme. only_new: just the items built since the
    last restyle (a panel that rebuilds its plots). Returns how many items were restyled."""
    roles = _role_map(old, CURRENT)
    fg = QtGui.QColor(FG)
    tick_font = QtGui.QFont(QtWidgets.QApplication.font())
    tag = (CURRENT.name, line_scale())
    done = 0
    for view in root.findChildren(pg.GraphicsView):
        if not only_new:
            view.setBackground(BG)
        scene = view.scene()
        if scene is None:
            continue
        for item in scene.items():
            if only_new and getattr(item, "_theme_tag", None) == tag:
                continue
            _restyle_item(item, roles, fg, tick_font)
            done += 1
            try:
                item._theme_tag = tag
            except AttributeError:
                pass
    return done


def is_default() -> bool:
    """The look panels are built with: nothing to restyle."""
    return CURRENT.name == "dark" and line_scale() == 1.0


def _restyle_item(item, roles, fg, tick_font):
    from .panels.base import Points      # panels import theme: import here, not at module load
    if isinstance(item, pg.AxisItem):
        item.setPen(fg)
        item.setTextPen(fg)
        item.setStyle(tickFont=tick_font)
        if item.labelText:
            item.labelStyle = dict(item.labelStyle, color=FG, **{"font-size": f"{tick_font.pointSizeF():.0f}pt"})
            item._updateLabel()
    elif isinstance(item, pg.PlotItem):
        t = item.titleLabel
        if t.text:
            t.setText(t.text, color=FG, size=title_size())
    elif isinstance(item, pg.LegendItem):
        item.setLabelTextColor(FG)
        for _sample, label in item.items:       # setLabelTextColor only changes future labels
            label.setText(label.text, color=FG)
        item.setBrush(pg.mkBrush(*LEGEND_BRUSH))
        item.setPen(pg.mkPen(*CURRENT.legend_pen))
    elif isinstance(item, pg.TextItem):
        item.setColor(_recolour(item.color, roles))
    elif isinstance(item, Points):
        pen = item._pen
        c = _recolour(pen.color(), roles)
        item.setStyle((c.red(), c.green(), c.blue()), c.alpha(), _base_width(item, pen.widthF()) * line_scale())
    elif isinstance(item, pg.PlotCurveItem):
        item.setPen(_repen(pg.mkPen(item.opts["pen"]), roles, item))
    elif isinstance(item, pg.InfiniteLine):
        item.setPen(_repen(item.pen, roles, item))
    elif isinstance(item, pg.ScatterPlotItem):
        brush = item.opts.get("brush")
        if brush is not None and not isinstance(brush, (list, tuple)):
            item.setBrush(pg.mkBrush(_recolour(pg.mkBrush(brush).color(), roles)))
