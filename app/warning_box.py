"""One way to tell the user something went wrong: the status bar and a non-blocking message box."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets


def show_warning(window: QtWidgets.QMainWindow, title: str, text: str, previous=None) -> QtWidgets.QMessageBox:
    """First line in the status bar, the whole text in a non-modal box (the previous box, if any,
    closes); returns the new box. The window and its data stay as they were."""
    first = text.splitlines()[0] if text else title
    window.statusBar().showMessage(f"⚠ {title}: {first}", 15000)
    if previous is not None:
        previous.close()
    box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Warning, title, text,
                                QtWidgets.QMessageBox.StandardButton.Ok, window)
    box.setModal(False)
    box.setWindowModality(QtCore.Qt.WindowModality.NonModal)
    box.show()
    return box
