"""Panel export to SVG survives pyqtgraph's SVG exporter failing on its own path data."""
import pyqtgraph as pg
import pytest
from pyqtgraph import exporters
from PySide6 import QtWidgets

from app.export import export_widget


@pytest.mark.parametrize("in_a_panel", [False, True])
def test_svg_export_falls_back_to_painting_the_widget(qtbot, tmp_path, monkeypatch, in_a_panel):
    plot = pg.PlotWidget()
    plot.plot([0, 1, 2], [1, 0, 1])
    target = plot
    if in_a_panel:                               # a panel: a plain QWidget holding one plot view
        target = QtWidgets.QWidget()
        QtWidgets.QVBoxLayout(target).addWidget(plot)
    qtbot.addWidget(target)
    target.resize(300, 200)
    target.show()

    def broken(self, fileName=None, **kw):      # what pyqtgraph 0.14 raises on some curves (#3485)
        raise ValueError("not enough values to unpack (expected 2, got 1)")
    monkeypatch.setattr(exporters.SVGExporter, "export", broken)
    how = export_widget(target, str(tmp_path / "p.svg"))
    assert how == "widget"
    assert "<svg" in (tmp_path / "p.svg").read_text()[:600]
