"""A row of controls that wraps onto a second line when its panel is narrow.

A QHBoxLayout's minimum width is the sum of its widgets' (a panel's control row of combo
boxes, spin boxes and check boxes alone asks ~450 px), and the docks side by side then push
the window past a 1366 px screen. A flow layout's minimum width is its widest widget; the row
takes more height instead (heightForWidth). After Qt's Flow Layout example, in Python.
"""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets


class FlowLayout(QtWidgets.QLayout):
    def __init__(self, parent=None, spacing: int = 6):
        super().__init__(parent)
        self._items: list[QtWidgets.QLayoutItem] = []
        self._spacing = spacing
        self.setContentsMargins(0, 0, 0, 0)

    def addItem(self, item):
        self._items.append(item)

    def count(self):
        return len(self._items)

    def itemAt(self, i):
        return self._items[i] if 0 <= i < len(self._items) else None

    def takeAt(self, i):
        return self._items.pop(i) if 0 <= i < len(self._items) else None

    def expandingDirections(self):
        return QtCore.Qt.Orientation(0)

    def hasHeightForWidth(self):
        return True

    def heightForWidth(self, width):
        return self._place(QtCore.QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect):
        super().setGeometry(rect)
        self._place(rect, move=True)

    def sizeHint(self):
        """One line: every widget at its preferred width."""
        w = h = 0
        for item in self._visible():
            s = item.sizeHint()
            w += s.width() + (self._spacing if w else 0)
            h = max(h, s.height())
        m = self.contentsMargins()
        return QtCore.QSize(w + m.left() + m.right(), h + m.top() + m.bottom())

    def minimumSize(self):
        """As narrow as the widest widget."""
        size = QtCore.QSize()
        for item in self._visible():
            size = size.expandedTo(item.minimumSize())
        m = self.contentsMargins()
        return size + QtCore.QSize(m.left() + m.right(), m.top() + m.bottom())

    def _visible(self):
        return [it for it in self._items if not (it.widget() is not None and it.widget().isHidden())]

    def _place(self, rect: QtCore.QRect, move: bool) -> int:
        """Lay the items out left to right, wrapping at rect's width; returns the height used."""
        m = self.contentsMargins()
        area = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom())
        x, y, line = area.x(), area.y(), 0
        for item in self._visible():
            s = item.sizeHint()
            s.setWidth(min(s.width(), max(area.width(), item.minimumSize().width())))
            if x > area.x() and x + s.width() > area.right() + 1:
                x, y, line = area.x(), y + line + self._spacing, 0
            if move:
                item.setGeometry(QtCore.QRect(QtCore.QPoint(x, y), s))
            x += s.width() + self._spacing
            line = max(line, s.height())
        return y + line - rect.y() + m.bottom()
