"""One dark theme for the whole window: widget style sheet, pyqtgraph defaults, plot colours.

Every panel takes its colours from here so curves, data and samples look the same in every
view (data is always grey-blue, samples always orange, the true score always green).
"""
from __future__ import annotations

import os

import pyqtgraph as pg
from PySide6 import QtGui, QtWidgets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESOURCES = os.path.join(ROOT, "resources")

BG = "#1b1d23"          # plot background
FG = "#c8ccd4"          # axis text
GRID = 0.15             # grid alpha
DATA = (120, 160, 220)          # training data points
SAMPLES = (255, 150, 60)        # generated samples / particles
TRUE = (90, 220, 120)           # analytic (true) score
MODEL = (240, 240, 240)         # learned arrows
MARKER = (255, 80, 80)          # current-time marker
# curve colours for named series (losses, schedule curves), colour-blind friendly (Okabe-Ito)
SERIES = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
          (213, 94, 0), (204, 121, 167), (200, 200, 200)]

HEAT_CMAP = "viridis"
LEGEND_BRUSH = (27, 29, 35, 210)       # legends stay readable over heat maps and dense points


def legend(plot: pg.PlotItem, offset=(-5, -5)):
    return plot.addLegend(offset=offset, labelTextColor=FG, brush=LEGEND_BRUSH, pen=(70, 75, 88))


def series_color(i: int):
    return SERIES[i % len(SERIES)]


def setup_pyqtgraph():
    pg.setConfigOptions(antialias=False, background=BG, foreground=FG, imageAxisOrder="row-major")


def fast_view(view):
    """QGraphicsView settings for live plots: no 2-pixel antialiasing margin around update
    rectangles (antialiasing is off), which otherwise spill every data update into the axes."""
    view.setOptimizationFlag(QtWidgets.QGraphicsView.OptimizationFlag.DontAdjustForAntialiasing, True)
    return view


def style_sheet() -> str:
    path = os.path.join(RESOURCES, "style.qss")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def apply(app):
    """Fusion style + dark palette + style sheet (the palette covers what the sheet doesn't)."""
    setup_pyqtgraph()
    app.setStyle("Fusion")
    pal = QtGui.QPalette()
    c = QtGui.QColor
    roles = QtGui.QPalette.ColorRole
    pal.setColor(roles.Window, c("#23262e"))
    pal.setColor(roles.WindowText, c("#dfe2e8"))
    pal.setColor(roles.Base, c("#1b1d23"))
    pal.setColor(roles.AlternateBase, c("#2a2d36"))
    pal.setColor(roles.ToolTipBase, c("#2f333d"))
    pal.setColor(roles.ToolTipText, c("#eef0f4"))
    pal.setColor(roles.Text, c("#dfe2e8"))
    pal.setColor(roles.Button, c("#2c3039"))
    pal.setColor(roles.ButtonText, c("#dfe2e8"))
    pal.setColor(roles.Highlight, c("#3d7be0"))
    pal.setColor(roles.HighlightedText, c("#ffffff"))
    pal.setColor(roles.PlaceholderText, c("#80858f"))
    pal.setColor(QtGui.QPalette.ColorGroup.Disabled, roles.Text, c("#6b707a"))
    pal.setColor(QtGui.QPalette.ColorGroup.Disabled, roles.ButtonText, c("#6b707a"))
    app.setPalette(pal)
    app.setStyleSheet(style_sheet())


def style_plot(plot: pg.PlotItem, title: str = "", x: str = "", y: str = "", grid: bool = True):
    """Title, axis labels and a light grid: every plot in the app is labelled."""
    if title:
        plot.setTitle(title, color=FG, size="10pt")
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
