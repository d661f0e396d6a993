"""The lesson browser: every lesson (resources/presets/*.toml) under its course topic, with a
thumbnail of its data and the formula it shows. Choosing one emits `chosen(name)`.

Thumbnails are generated, not shipped: the lesson's dataset drawn small (points, or the first
images of an image set), with the family's name. They are cached per dataset for the session.
"""
from __future__ import annotations

import math
import re

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from . import presets, theme

THUMB = 96
NAME_ROLE = QtCore.Qt.ItemDataRole.UserRole
_DATA_CACHE: dict[str, np.ndarray | None] = {}


def _dataset_preview(dataset: str) -> np.ndarray | None:
    """(N, 2) points or (N, C, H, W) images of the dataset, or None when it cannot be loaded."""
    if dataset not in _DATA_CACHE:
        from engines import data as D
        try:
            n = 16 if D.is_image(dataset) else 600
            _DATA_CACHE[dataset] = D.load(dataset, n, seed=0).numpy()
        except Exception:       # a thumbnail is decoration: a lesson whose data is missing still lists
            _DATA_CACHE[dataset] = None
    return _DATA_CACHE[dataset]


def thumbnail(dataset: str, family: str, size: int = THUMB) -> QtGui.QPixmap:
    """The lesson's data drawn in a size x size pixmap, in the current theme's colours."""
    pix = QtGui.QPixmap(size, size)
    pix.fill(QtGui.QColor(theme.BG))
    p = QtGui.QPainter(pix)
    p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
    x = _dataset_preview(dataset)
    if x is not None and x.ndim == 2 and len(x):
        lo, hi = np.nanmin(x, 0), np.nanmax(x, 0)
        span = float(max(hi[0] - lo[0], hi[1] - lo[1], 1e-9))
        c = (lo + hi) / 2
        px = (x[:, 0] - c[0]) / span * (size - 14) + size / 2          # (N,) pixels, y up
        py = size / 2 - (x[:, 1] - c[1]) / span * (size - 14)
        p.setPen(QtCore.Qt.PenStyle.NoPen)
        p.setBrush(QtGui.QColor(*theme.DATA, 150))
        for a, b in zip(px, py):
            p.drawEllipse(QtCore.QPointF(a, b), 1.4, 1.4)
    elif x is not None and x.ndim == 4:
        cols = int(math.ceil(math.sqrt(len(x))))
        cell = (size - 4) // cols
        for k, im in enumerate(x):
            a = ((np.clip(im[0], -1, 1) + 1) * 127.5).astype(np.uint8)   # (H, W), first channel
            a = np.ascontiguousarray(a)
            img = QtGui.QImage(a.data, a.shape[1], a.shape[0], a.shape[1], QtGui.QImage.Format.Format_Grayscale8)
            r, col = divmod(k, cols)
            p.drawImage(QtCore.QRectF(2 + col * cell, 2 + r * cell, cell - 1, cell - 1), img.copy())
    p.setPen(QtGui.QColor(theme.FG))
    f = p.font()
    f.setPointSizeF(7.5)
    f.setBold(True)
    p.setFont(f)
    p.drawText(QtCore.QRectF(3, size - 15, size - 6, 14),
               int(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignBottom), family)
    p.end()
    return pix


def reflow(text: str) -> str:
    """Lesson text wraps at its TOML line breaks; a blank line is a paragraph break."""
    return re.sub(r"(?<!\n)\n(?!\n)", " ", text.strip())


def lessons_by_topic() -> list[tuple[str, list[dict]]]:
    """[(topic, [lesson dict, ...])] in the course's order; lessons that fail to load are left out."""
    groups: dict[str, list[dict]] = {}
    for name in presets.names():
        try:
            d = presets.load(name)
        except Exception:       # a broken lesson file must not hide the others (it shows on open)
            continue
        groups.setdefault(d["topic"], []).append(d)
    order = list(presets.TOPICS) + sorted(t for t in groups if t not in presets.TOPICS)
    return [(t, sorted(groups[t], key=lambda d: d["title"])) for t in order if t in groups]


class LessonBrowser(QtWidgets.QDialog):
    chosen = QtCore.Signal(str)

    def __init__(self, current: str = "", parent=None):
        super().__init__(parent)
        self.setWindowTitle("Lessons")
        self.resize(820, 560)
        self.tree = QtWidgets.QTreeWidget()
        self.tree.setHeaderHidden(True)
        self.tree.setIconSize(QtCore.QSize(THUMB // 2, THUMB // 2))
        self.tree.setMinimumWidth(300)
        self.picture = QtWidgets.QLabel()
        self.picture.setFixedSize(THUMB * 2, THUMB * 2)
        self.title = QtWidgets.QLabel()
        self.title.setWordWrap(True)
        f = self.title.font()
        f.setPointSizeF(f.pointSizeF() * 1.4)
        f.setBold(True)
        self.title.setFont(f)
        self.formula = QtWidgets.QLabel()
        self.formula.setObjectName("formula")
        self.formula.setWordWrap(True)
        self.formula.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        ff = self.formula.font()
        ff.setPointSizeF(ff.pointSizeF() * 1.3)
        self.formula.setFont(ff)
        self.text = QtWidgets.QLabel()
        self.text.setWordWrap(True)
        self.text.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop | QtCore.Qt.AlignmentFlag.AlignLeft)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.text)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Open
                                             | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        self.open_button = buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Open)
        buttons.accepted.connect(self._open)
        buttons.rejected.connect(self.reject)
        detail = QtWidgets.QVBoxLayout()
        detail.addWidget(self.title)
        detail.addWidget(self.picture)
        detail.addWidget(self.formula)
        detail.addWidget(scroll, 1)
        split = QtWidgets.QHBoxLayout()
        split.addWidget(self.tree, 1)
        split.addLayout(detail, 1)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addLayout(split, 1)
        lay.addWidget(buttons)
        self.lessons: dict[str, dict] = {}
        self._fill(current)
        self.tree.currentItemChanged.connect(lambda item, _prev: self._show(item))
        self.tree.itemDoubleClicked.connect(lambda item, _col: self._open())

    def _fill(self, current: str):
        select = None
        for topic, lessons in lessons_by_topic():
            top = QtWidgets.QTreeWidgetItem([topic])
            f = top.font(0)
            f.setBold(True)
            top.setFont(0, f)
            top.setFlags(QtCore.Qt.ItemFlag.ItemIsEnabled)
            self.tree.addTopLevelItem(top)
            for d in lessons:
                self.lessons[d["name"]] = d
                item = QtWidgets.QTreeWidgetItem([d["title"]])
                item.setData(0, NAME_ROLE, d["name"])
                item.setIcon(0, QtGui.QIcon(thumbnail(d["cfg"].dataset, d["cfg"].family)))
                item.setToolTip(0, d["formula"] or d["title"])
                top.addChild(item)
                if select is None or d["name"] == current:
                    select = item
            top.setExpanded(True)
        if select is not None:
            self.tree.setCurrentItem(select)
            self._show(select)

    def _show(self, item):
        name = item.data(0, NAME_ROLE) if item is not None else None
        self.open_button.setEnabled(bool(name))
        if not name:
            return
        d = self.lessons[name]
        self.title.setText(d["title"])
        self.formula.setText(d["formula"] or "")
        self.formula.setVisible(bool(d["formula"]))
        self.text.setText(reflow(d["lesson"]))
        self.picture.setPixmap(thumbnail(d["cfg"].dataset, d["cfg"].family, THUMB * 2))

    def selected(self) -> str:
        item = self.tree.currentItem()
        return (item.data(0, NAME_ROLE) or "") if item is not None else ""

    def _open(self):
        name = self.selected()
        if name:
            self.chosen.emit(name)
            self.accept()
