"""Training settings: the engines.config.TrainConfig form, plus the seed and the device."""
from __future__ import annotations

import torch
from PySide6 import QtCore, QtWidgets

from engines.config import TrainConfig, describe

from .form import ConfigForm, combo, tooltip

LIVE = ("lr", "batch", "grad_clip")     # changed in the running Run; the rest restart it


def devices() -> list[str]:
    out = ["cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


class TrainSettings(QtWidgets.QWidget):
    """changed(name, value) for a committed, valid edit; LIVE names apply without a restart."""
    changed = QtCore.Signal(str, object)
    invalid = QtCore.Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        spec = {d["name"]: d for d in describe(TrainConfig)}
        self.form = ConfigForm(TrainConfig, exclude=("seed", "device", "threads"))
        self.form.changed.connect(self.changed.emit)
        self.form.invalid.connect(self.invalid.emit)
        self.seed = QtWidgets.QSpinBox()
        self.seed.setRange(0, 2 ** 31 - 1)
        self.seed.setKeyboardTracking(False)
        self.seed.setToolTip(tooltip(spec["seed"]))
        self.seed.valueChanged.connect(lambda v: self.changed.emit("seed", int(v)))
        self.device = combo()
        for d in devices():
            self.device.addItem(d.upper(), d)
        self.device.setToolTip("Where the network trains: CPU, or CUDA when torch sees a GPU")
        self.device.activated.connect(lambda *a: self.changed.emit("device", self.device.currentData()))
        row = QtWidgets.QFormLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setLabelAlignment(QtCore.Qt.AlignmentFlag.AlignRight)
        row.addRow("seed", self.seed)
        row.addRow("device", self.device)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.form)
        lay.addLayout(row)

    def values(self) -> dict:
        v = self.form.values()
        v["seed"] = int(self.seed.value())
        v["device"] = self.device.currentData() or "cpu"
        return v

    def set_values(self, values: dict):
        values = dict(values or {})
        if "seed" in values:
            self.seed.blockSignals(True)
            self.seed.setValue(int(values.pop("seed")))
            self.seed.blockSignals(False)
        if "device" in values:
            d = values.pop("device")
            i = self.device.findData("cuda" if d == "auto" and self.device.findData("cuda") >= 0 else d)
            self.device.setCurrentIndex(max(i, 0))
        values.pop("threads", None)
        self.form.set_values(values)
