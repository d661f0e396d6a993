"""Any panel to PNG or SVG.

A panel whose drawing is one pyqtgraph view is exported through pyqtgraph's exporters
(ImageExporter / SVGExporter on the view's scene: vector curves and text in the SVG, the
plot at `scale` times its size in the PNG). Anything else (several views, forms, labels) is
grabbed as a widget (PNG) or painted into a QSvgGenerator (SVG).
"""
from __future__ import annotations

import os

import pyqtgraph as pg
import pyqtgraph.exporters as exporters
from PySide6 import QtCore, QtGui, QtSvg, QtWidgets

FORMATS = (".png", ".svg")


class PanelExportError(ValueError):
    pass


def plot_views(widget: QtWidgets.QWidget) -> list[pg.GraphicsView]:
    """The visible pyqtgraph views inside widget (itself included)."""
    views = [widget] if isinstance(widget, pg.GraphicsView) else []
    views += [v for v in widget.findChildren(pg.GraphicsView) if v.isVisible()]
    return views


def export_widget(widget: QtWidgets.QWidget, path: str, scale: float = 2.0) -> str:
    """Write `widget` to path (.png or .svg); returns how it was exported ('pyqtgraph' or 'widget')."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise PanelExportError(f"{path}: export a panel as .png or .svg")
    views = plot_views(widget)
    if len(views) == 1:
        scene = views[0].scene()
        if ext == ".png":
            ex = exporters.ImageExporter(scene)
            w = int(views[0].width() * scale)
            ex.parameters()["width"] = max(w, 16)     # height follows the aspect ratio
            ex.export(path)
            if not os.path.exists(path):
                raise PanelExportError(f"{path}: pyqtgraph wrote nothing")
            return "pyqtgraph"
        try:
            exporters.SVGExporter(scene).export(path)
            return "pyqtgraph"
        except ValueError:
            # pyqtgraph 0.14's SVGExporter fails to parse some path coordinates of its own output
            # ("not enough values to unpack", pyqtgraph issue #3485): paint the widget instead
            pass
    if ext == ".png":
        ratio = max(scale, 1.0)
        image = QtGui.QImage(QtCore.QSize(int(widget.width() * ratio), int(widget.height() * ratio)),
                             QtGui.QImage.Format.Format_ARGB32)
        image.setDevicePixelRatio(ratio)
        image.fill(widget.palette().window().color())
        widget.render(image)
        if not image.save(path):
            raise PanelExportError(f"{path}: could not be written")
        return "widget"
    gen = QtSvg.QSvgGenerator()
    gen.setFileName(path)
    gen.setSize(widget.size())
    gen.setViewBox(QtCore.QRect(QtCore.QPoint(0, 0), widget.size()))
    gen.setTitle(widget.windowTitle() or "panel")
    painter = QtGui.QPainter(gen)
    try:
        # QWidget.render explicitly: a QGraphicsView overrides render() with another signature
        QtWidgets.QWidget.render(widget, painter, QtCore.QPoint(0, 0))
    finally:
        painter.end()
    return "widget"
