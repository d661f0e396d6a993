"""Image data in the window (offscreen): the picker lists the built-in image sets with a preview;
"Open file…" takes a .npy of images or an MNIST IDX file, "Open image folder…" a folder of PNGs;
folders and big files load in a thread behind a progress bar (cancellable); a bad folder or file
shows the engine's own message and the previous dataset and run stay."""
import time

import numpy as np
import pytest
import torch

from app.main_window import MainWindow
from engines.data.images import write_idx


@pytest.fixture(scope="module")
def win(themed_app, wait_until):
    w = MainWindow()
    w.show()
    wait_until(lambda: w.ready(), 120, "the first run to be ready")
    yield w
    w.shutdown()
    w.close()
    w.deleteLater()


def _digit_like(n, size=8, seed=0):
    """n uint8 images (n, size, size): a bright bar at a random place on black."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, size, size), np.uint8)
    for k in range(n):
        r, c = rng.integers(0, size - 3, 2)
        x[k, r:r + 3, c:c + 2] = 255
    return x


def _wait_loaded(win, wait_until):
    wait_until(lambda: not win.datasets.loading(), 30, "the loader thread")


def test_picker_lists_image_sets_with_a_preview(win):
    p = win.datasets
    items = [p.combo.itemData(i) for i in range(p.combo.count())]
    for name in ("digits", "digits16", "digits_binary", "shapes", "shapes_binary"):
        assert name in items
    heading = p.combo.findText("— images —")
    assert heading >= 0 and not p.combo.model().item(heading).isEnabled()
    p.select("shapes", emit=False)
    assert p.img.isVisible() and p.img.image is not None and "16×16" in p.label.toPlainText()
    p.select(win.dataset, emit=False)
    assert win.open_folder_action.text() == "Open image folder…"


def test_npy_of_images_loads_and_trains(win, tmp_path, wait_until):
    f = tmp_path / "bars.npy"
    np.save(f, _digit_like(30))
    assert win.datasets.open_file(str(f)) is True                   # small: loaded at once
    wait_until(lambda: getattr(win.info, "n_data", None) == 30 and getattr(win.info, "is_image", None), 60, "the .npy run")
    assert win.info.data_shape == (1, 8, 8) and win.dataset == str(f)
    assert win.datasets.img.isVisible() and "30 images" in win.datasets.label.toPlainText()
    assert win.field.data_img.isVisible()                            # training images, no field
    win.step_once(2)
    wait_until(lambda: win.step == 2, 60, "two steps on the images")
    assert win.errors == []


def test_folder_of_pngs_loads_in_the_background(win, tmp_path, wait_until):
    from PIL import Image
    folder = tmp_path / "pngs"
    folder.mkdir()
    for k, img in enumerate(_digit_like(24, seed=1)):
        Image.fromarray(img).save(folder / f"img{k:02d}.png")
    assert win.datasets.open_file(str(folder)) is None               # a folder: a background load
    assert win.datasets.progress.isVisible() and win.datasets.cancel_btn.isVisible()
    _wait_loaded(win, wait_until)
    wait_until(lambda: getattr(win.info, "n_data", None) == 24, 60, "the folder run")
    assert not win.datasets.progress.isVisible()
    assert win.info.is_image and win.dataset == str(folder)
    assert win.datasets.combo.currentData() == str(folder)
    assert win.errors == []


def test_idx_file_loads(win, tmp_path, wait_until):
    f = tmp_path / "train-images-idx3-ubyte"
    write_idx(f, _digit_like(40, seed=2))
    assert win.datasets.open_file(str(f), background=True) is None
    _wait_loaded(win, wait_until)
    wait_until(lambda: getattr(win.info, "n_data", None) == 40, 60, "the IDX run")
    assert win.info.data_shape == (1, 8, 8)
    assert win.errors == []


def test_progress_bar_follows_a_slow_load_and_cancel_keeps_the_dataset(win, tmp_path, wait_until, pump,
                                                                       monkeypatch):
    import app.controls.dataset as ds

    def slow_load(path, size=None, progress=None):
        for k in range(1, 11):
            time.sleep(0.05)
            progress(k / 10)
        return torch.zeros(12, 1, 8, 8)
    monkeypatch.setattr(ds, "load_images", slow_load)
    seen = []
    win.datasets.progress.valueChanged.connect(seen.append)
    f = tmp_path / "big-idx3-ubyte"
    f.write_bytes(b"\0" * 16)
    assert win.datasets.open_file(str(f), background=True) is None
    _wait_loaded(win, wait_until)
    assert any(0 < v < 1000 for v in seen)                           # it moved while loading
    wait_until(lambda: getattr(win.info, "n_data", None) == 12, 60, "the slow file's run")

    # cancelled half-way: nothing changes, no message
    dataset, worker = win.dataset, win.worker
    other = tmp_path / "other-idx3-ubyte"
    other.write_bytes(b"\0" * 16)
    assert win.datasets.open_file(str(other), background=True) is None
    pump(0.15)
    win.datasets.cancel_loading()
    assert not win.datasets.loading() and not win.datasets.progress.isVisible()
    pump(0.2)
    assert win.dataset == dataset and win.worker is worker and win.errors == []


def test_bad_folder_and_bad_file_show_the_engine_message_and_keep_the_dataset(win, tmp_path, wait_until):
    dataset, worker = win.dataset, win.worker
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    assert win.datasets.open_file(str(empty)) is None
    _wait_loaded(win, wait_until)
    title, text = win.errors[-1]
    assert "nothing_here" in text and "no image files" in text       # DataFileError, as written
    assert win.dataset == dataset and win.worker is worker
    assert win.datasets.combo.currentData() == dataset
    assert win._msgbox is not None and "no image files" in win._msgbox.text()
    win._msgbox.close()

    bad = tmp_path / "five_dims.npy"
    np.save(bad, np.zeros((2, 2, 2, 2, 2), np.float32))
    n = len(win.errors)
    assert win.datasets.open_file(str(bad)) is False
    assert len(win.errors) == n + 1 and "five_dims.npy" in win.errors[-1][1]
    assert win.dataset == dataset and win.worker is worker
    win._msgbox.close()
    win.errors.clear()


def test_choose_family_and_dataset_like_the_command_line(win, wait_until):
    win.choose(family="vae", dataset="digits")
    wait_until(lambda: getattr(win.info, "family", None) == "vae" and getattr(win.info, "is_image", None), 60, "vae on digits")
    with pytest.raises(ValueError, match="unknown dataset"):
        win.choose(dataset="no_such_dataset")
    with pytest.raises(ValueError, match="not available"):
        win.choose(family="no_such_family")
    assert win.errors == []
