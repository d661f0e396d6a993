"""The main window (kept as the import path of app/main.py, the benchmark and the tests): the
layout shell is app/shell.py, the run lifecycle app/controller.py, the panels
app/panels/registry.py."""
from .controller import SPEEDS, Controller, dataset_is_image
from .shell import MainWindow
from .window_parts import lesson_html, peak_rss_mb

__all__ = ["MainWindow", "Controller", "SPEEDS", "dataset_is_image", "lesson_html", "peak_rss_mb"]
