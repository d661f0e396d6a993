"""Fixtures for the app tests (pytest-qt, offscreen): a themed QApplication and event-loop
helpers that keep the GUI responsive while a test waits for the worker thread."""
import os
import time

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def themed_app(qapp):
    from app import theme
    theme.apply(qapp)
    return qapp


@pytest.fixture(scope="session")
def pump(themed_app):
    def run(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            themed_app.processEvents()
            time.sleep(0.005)
    return run


@pytest.fixture(scope="session")
def wait_until(themed_app):
    def run(cond, timeout=30.0, what="condition"):
        end = time.perf_counter() + timeout
        while not cond():
            if time.perf_counter() > end:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            themed_app.processEvents()
            time.sleep(0.005)
    return run
