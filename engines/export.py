"""Losses and samples to CSV / NPY, for the window's File > Export and for scripts.

NPY files are plain (or structured) numeric arrays that `np.load(path)` reads without
`allow_pickle`; CSV files have a header row.
"""
from __future__ import annotations

import os

import numpy as np


class ExportError(ValueError):
    """What cannot be exported in the asked format; the message says what to choose instead."""


def loss_table(steps, history: dict) -> np.ndarray:
    """A structured array, one record per logged step: ('step', int64) then one float64 field
    per loss term, in the order of `history`."""
    names = list(history)
    table = np.zeros(len(steps), dtype=[("step", np.int64)] + [(str(n), np.float64) for n in names])
    table["step"] = np.asarray(steps, dtype=np.int64)
    for n in names:
        table[str(n)] = np.asarray(history[n], dtype=np.float64)
    return table


def write_losses(path: str, steps, history: dict) -> int:
    """losses -> .csv (header step,name...) or .npy (the structured loss_table); returns rows."""
    table = loss_table(steps, history)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        np.save(path, table, allow_pickle=False)
    elif ext == ".csv":
        fmt = ["%d"] + ["%.9g"] * (len(table.dtype.names) - 1)
        np.savetxt(path, table, fmt=fmt, delimiter=",", header=",".join(table.dtype.names), comments="")
    else:
        raise ExportError(f"{path}: losses are written as .csv or .npy")
    return len(table)


def write_samples(path: str, samples) -> tuple[int, ...]:
    """Samples (N, D) points or (N, C, H, W) images in data coordinates -> .npy, or .csv for
    points (header x,y,... ); returns the array's shape."""
    arr = np.asarray(samples)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        np.save(path, arr, allow_pickle=False)
    elif ext == ".csv":
        if arr.ndim != 2:
            raise ExportError(f"{path}: CSV holds points; write images (shape {arr.shape}) to a .npy file")
        header = ",".join(("x", "y", "z")[i] if arr.shape[1] <= 3 else f"x{i}" for i in range(arr.shape[1]))
        np.savetxt(path, arr.astype(np.float64), fmt="%.9g", delimiter=",", header=header, comments="")
    else:
        raise ExportError(f"{path}: samples are written as .csv or .npy")
    return tuple(arr.shape)
