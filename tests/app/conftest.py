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


@pytest.fixture(scope="session")
def run_info():
    """make(**fields): an engines.messages.RunInfo for a point run, for panels tested alone."""
    import numpy as np
    from engines import messages as M

    def make(**kw):
        base = dict(run_id=1, family="fake", title="Fake", summary="", dataset="moons", capabilities=frozenset(),
                    level=None, samplers=(), default_sampler="", parameters=0, device="cpu", is_image=False,
                    data_shape=(2,), n_data=100, trainable=True, analytic=False, threads=1, init_seconds=0.0,
                    schedule={}, preview=np.zeros((0, 2)), bounds=(-1.0, 1.0, -1.0, 1.0), sampler_levels=None,
                    has_views=False)
        base.update(kw)
        return M.RunInfo(**base)
    return make
