"""Image datasets, user image files, the conv nets, the digit classifier metric, DDPM on digits."""
import gzip
import time

import numpy as np
import pytest
import torch

from engines import data as D
from engines import digit_classifier as dc
from engines.data.files import DataFileError
from engines.data.images import (load_images, make_shapes, read_idx, write_idx, is_image_path,
                                 digits_with_labels)
from engines.image_nets import ConvDecoder, ConvEncoder, UNet, level_sizes

try:
    from PIL import Image as PIL
except ImportError:  # Pillow reads PNG/JPEG folders; everything else works without it
    PIL = None
needs_pillow = pytest.mark.skipif(PIL is None, reason="Pillow is not installed")


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- built-in sets

def test_digit_sets_shapes_ranges_and_size_limit():
    assert {"digits", "digits16", "digits_binary", "shapes"} <= set(D.names())
    x = D.load("digits", 500, seed=1)
    assert x.shape == (500, 1, 8, 8) and x.dtype == torch.float32
    assert x.min() == -1 and x.max() == 1
    # pixel values are k/16 for k = 0..16
    k = (x + 1) / 2 * 16
    assert torch.allclose(k, k.round(), atol=1e-5)
    assert len(torch.unique(x.reshape(500, -1), dim=0)) == 500        # distinct digits
    assert D.load("digits", 10 ** 5).shape == (1797, 1, 8, 8)         # a finite set: all, once
    x16 = D.load("digits16", 100)
    assert x16.shape == (100, 1, 16, 16) and x16.min() >= -1 and x16.max() <= 1
    xb = D.load("digits_binary", 100)
    assert set(torch.unique(xb).tolist()) == {-1.0, 1.0}
    assert D.is_image("digits") and not D.is_image("moons")


def test_shapes_deterministic_and_well_formed():
    a, la = make_shapes(300, _g(5), return_labels=True)
    b, lb = make_shapes(300, _g(5), return_labels=True)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, make_shapes(300, _g(6)))
    assert a.shape == (300, 1, 16, 16) and a.min() >= -1 and a.max() <= 1
    assert set(la.tolist()) == {0, 1, 2}
    # every image has a shape fully inside the frame: its border row/columns stay background
    assert (a[:, :, 0, :] == -1).all() and (a[:, :, -1, :] == -1).all()
    assert (a[:, :, :, 0] == -1).all() and (a[:, :, :, -1] == -1).all()
    ink = (a > 0).flatten(1).sum(1)
    assert (ink >= 8).all()
    # antialiased edges have intermediate values; the binary variant has none
    assert ((a > -0.95) & (a < 0.95)).any()
    hard = D.load("shapes_binary", 50)
    assert set(torch.unique(hard).tolist()) <= {-1.0, 1.0}
    assert torch.equal(D.load("shapes", 40, seed=3), D.load("shapes", 40, seed=3))


# ----------------------------------------------------------------------------- user files

def _save_png(path, arr):
    PIL.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)


@needs_pillow
def test_folder_of_pngs_grey_and_rgb(tmp_path):
    rs = np.random.RandomState(0)
    imgs = rs.randint(0, 256, (5, 6, 7)).astype(np.uint8)
    d = tmp_path / "grey"
    d.mkdir()
    for i, im in enumerate(imgs):
        _save_png(d / f"im{i}.png", im)
    (d / "notes.txt").write_text("ignored")
    x = load_images(d)
    assert x.shape == (5, 1, 6, 7)
    assert torch.allclose(x[:, 0], torch.from_numpy(imgs).float() / 255 * 2 - 1, atol=1e-6)
    # through the public loader, with a subset
    y = D.load(str(d), 3)
    assert y.shape == (3, 1, 6, 7)
    assert is_image_path(d) and D.is_image(str(d))

    c = tmp_path / "rgb"
    c.mkdir()
    for i in range(3):
        _save_png(c / f"c{i}.png", rs.randint(0, 256, (8, 8, 3)))
    PIL.fromarray(rs.randint(0, 256, (8, 8, 3)).astype(np.uint8)).save(c / "c3.jpg", quality=95)
    x = load_images(c)
    assert x.shape == (4, 3, 8, 8) and x.min() >= -1 and x.max() <= 1
    seen = []
    load_images(c, progress=seen.append)
    assert seen[-1] == 1.0 and all(a <= b for a, b in zip(seen, seen[1:]))


@needs_pillow
def test_mixed_sizes_corrupt_and_empty_folders(tmp_path):
    m = tmp_path / "mixed"
    m.mkdir()
    _save_png(m / "a.png", np.zeros((8, 8)))
    _save_png(m / "b.png", np.zeros((10, 12)))
    with pytest.raises(DataFileError, match=r"b\.png.*12x10.*a\.png.*8x8"):
        load_images(m)
    x = load_images(m, size=16)                                       # resized: fine
    assert x.shape == (2, 1, 16, 16)
    assert load_images(m, size=(4, 6)).shape == (2, 1, 4, 6)

    bad = tmp_path / "bad"
    bad.mkdir()
    _save_png(bad / "ok.png", np.zeros((8, 8)))
    good = (bad / "ok.png").read_bytes()
    (bad / "broken.png").write_bytes(good[: len(good) // 2])           # truncated PNG
    with pytest.raises(DataFileError, match=r"broken\.png"):
        load_images(bad)
    (bad / "broken.png").write_bytes(b"this is not a png at all")
    with pytest.raises(DataFileError, match=r"broken\.png.*cannot be read"):
        load_images(bad)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFileError, match="empty.*no image files"):
        load_images(empty)
    (empty / "readme.txt").write_text("x")
    with pytest.raises(DataFileError, match="no image files"):
        D.load(str(empty), 10)
    with pytest.raises(DataFileError, match="not found"):
        load_images(tmp_path / "nowhere")


def test_npy_npz_arrays(tmp_path):
    rs = np.random.RandomState(1)
    u8 = rs.randint(0, 256, (20, 9, 9)).astype(np.uint8)
    np.save(tmp_path / "u8.npy", u8)
    x = D.load(str(tmp_path / "u8.npy"), 0)                           # 3 dims: images, not points
    assert x.shape == (20, 1, 9, 9)
    assert torch.allclose(x[:, 0], torch.from_numpy(u8).float() / 255 * 2 - 1, atol=1e-6)
    # channels-last floats in [0, 1]
    f = rs.rand(6, 5, 5, 3).astype(np.float32)
    np.savez(tmp_path / "f.npz", images=f)
    y = load_images(tmp_path / "f.npz")
    assert y.shape == (6, 3, 5, 5)
    assert torch.allclose(y, torch.from_numpy(f).permute(0, 3, 1, 2) * 2 - 1, atol=1e-6)
    # floats in another range are mapped onto [-1, 1]
    np.save(tmp_path / "wide.npy", rs.randn(4, 1, 6, 6) * 50)
    z = load_images(tmp_path / "wide.npy")
    assert z.min() == -1 and z.max() == 1
    # wrong dimensions, NaN, too many channels, bad integers
    np.save(tmp_path / "five.npy", np.zeros((2, 1, 3, 4, 4)))
    with pytest.raises(DataFileError, match=r"five\.npy.*3 or 4"):
        load_images(tmp_path / "five.npy")
    np.save(tmp_path / "nan.npy", np.full((2, 4, 4), np.nan))
    with pytest.raises(DataFileError, match="NaN"):
        load_images(tmp_path / "nan.npy")
    np.save(tmp_path / "ch.npy", np.zeros((2, 7, 8, 8)))
    with pytest.raises(DataFileError, match="7 channels"):
        load_images(tmp_path / "ch.npy")
    np.save(tmp_path / "neg.npy", np.full((2, 4, 4), -5, dtype=np.int16))
    with pytest.raises(DataFileError, match="expected 0..255"):
        load_images(tmp_path / "neg.npy")
    # a 2D point file still goes to the point loader
    np.save(tmp_path / "pts.npy", rs.randn(50, 2))
    assert D.load(str(tmp_path / "pts.npy"), 0).shape == (50, 2)
    assert D.is_image(str(tmp_path / "u8.npy")) and not D.is_image(str(tmp_path / "pts.npy"))
    (tmp_path / "fake.npy").write_bytes(b"garbage")
    with pytest.raises(DataFileError, match=r"fake\.npy"):
        load_images(tmp_path / "fake.npy")


def test_idx_files_good_bad_and_big(tmp_path):
    rs = np.random.RandomState(2)
    imgs = rs.randint(0, 256, (30, 28, 28)).astype(np.uint8)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(p, imgs)
    assert np.array_equal(read_idx(p), imgs)
    x = D.load(str(p), 0)
    assert x.shape == (30, 1, 28, 28)
    assert torch.allclose(x[:, 0], torch.from_numpy(imgs).float() / 255 * 2 - 1, atol=1e-6)
    # header by hand: magic 00 00 08 03, big-endian dims
    raw = gzip.decompress(p.read_bytes())
    assert raw[:4] == b"\x00\x00\x08\x03" and int.from_bytes(raw[4:8], "big") == 30
    # other IDX types round-trip too
    q = tmp_path / "f.idx"
    write_idx(q, rs.rand(3, 4, 5).astype(np.float32))
    assert read_idx(q).dtype == np.float32

    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(b"\x12\x34\x08\x03" + raw[4:])
    with pytest.raises(DataFileError, match=r"bad-idx3-ubyte.*bad IDX magic.*12 34 08 03"):
        load_images(bad)
    cut = tmp_path / "cut-idx3-ubyte"
    cut.write_bytes(raw[:-100])
    with pytest.raises(DataFileError, match=r"cut-idx3-ubyte: truncated.*30 x 28 x 28"):
        load_images(cut)
    labels = tmp_path / "labels-idx1-ubyte"
    write_idx(labels, np.arange(10, dtype=np.uint8))
    with pytest.raises(DataFileError, match=r"labels-idx1-ubyte.*shape \(10,\)"):
        load_images(labels)
    badgz = tmp_path / "x-idx3-ubyte.gz"
    badgz.write_bytes(p.read_bytes()[:200])
    with pytest.raises(DataFileError, match=r"x-idx3-ubyte\.gz.*gzip"):
        load_images(badgz)

    # MNIST-sized: 60,000 images in seconds, with progress
    big = tmp_path / "big-idx3-ubyte"
    data = rs.randint(0, 256, (60000, 28, 28)).astype(np.uint8)
    write_idx(big, data)
    seen = []
    t = time.perf_counter()
    x = load_images(big, progress=seen.append)
    dt = time.perf_counter() - t
    assert x.shape == (60000, 1, 28, 28) and dt < 15, dt
    assert float(x[12345, 0, 3, 4]) == pytest.approx(data[12345, 3, 4] / 255 * 2 - 1, abs=1e-6)
    assert len(seen) > 3 and seen[-1] == 1.0 and all(a <= b for a, b in zip(seen, seen[1:]))


# ----------------------------------------------------------------------------- networks

@pytest.mark.parametrize("shape,levels", [((1, 8, 8), 2), ((1, 16, 16), 3), ((3, 28, 28), 3), ((1, 7, 7), 1)])
def test_unet_shapes_and_conditioning(shape, levels):
    assert len(level_sizes(*shape[1:])) == levels
    torch.manual_seed(0)
    net = UNet(shape, base=16)
    x, c = torch.randn((5,) + shape), torch.rand(5)
    y = net(x, c)
    assert y.shape == x.shape
    # one optimisation step makes the output depend on both x and c
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(3):
        loss = (net(x, c) - x * c[:, None, None, None]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert not torch.allclose(net(x, c), net(x, c.flip(0)))


def test_unet_from_conditional_net_and_fourier():
    from engines.nets import conditional_net
    net = conditional_net((1, 8, 8), hidden=32, embedding="fourier")
    assert isinstance(net, UNet) and net.conv_in.out_channels == 8
    assert conditional_net((1, 8, 8)).conv_in.out_channels == 32      # default hidden 128 -> base 32
    assert net(torch.randn(2, 1, 8, 8), torch.rand(2)).shape == (2, 1, 8, 8)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 16, 16), (3, 28, 28), (3, 32, 32)])
def test_conv_encoder_decoder_shapes(shape):
    enc = ConvEncoder(shape, 12)
    dec = ConvDecoder(6, shape)
    assert enc(torch.randn((4,) + shape)).shape == (4, 12)
    assert dec(torch.randn(4, 6)).shape == (4,) + shape
    d_sn = ConvEncoder(shape, 1, act="lrelu", norm=False, spectral_norm=True)
    assert d_sn(torch.randn((2,) + shape)).shape == (2, 1)


# ----------------------------------------------------------------------------- classifier metric

def test_classifier_weights_ship_small_and_accurate():
    assert dc.WEIGHTS.exists() and dc.WEIGHTS.stat().st_size < 200_000
    assert dc.accuracy() > 0.95                                      # on the 297 held-out digits


def test_classifier_training_is_deterministic():
    a = dc.train_classifier(None, epochs=1)
    b = dc.train_classifier(None, epochs=1)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k


def test_frechet_distance_closed_forms():
    # commuting (diagonal) covariances: |mu1 - mu2|^2 + sum (sqrt a - sqrt b)^2
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 1.0])
    mu1, mu2 = torch.zeros(3), torch.tensor([1.0, 2.0, 0.0])
    want = 5.0 + ((a.sqrt() - b.sqrt()) ** 2).sum().item()
    assert dc.frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(want, rel=1e-9)
    # non-commuting: compare with scipy's sqrtm when available
    sl = pytest.importorskip("scipy.linalg")
    rs = np.random.RandomState(0)
    A, B = rs.randn(4, 4), rs.randn(4, 4)
    S1, S2 = A @ A.T + 0.1 * np.eye(4), B @ B.T + 0.1 * np.eye(4)
    ref = np.trace(S1) + np.trace(S2) - 2 * np.trace(sl.sqrtm(S1 @ S2)).real
    assert dc.frechet_distance(np.zeros(4), S1, np.zeros(4), S2) == pytest.approx(ref, rel=1e-7)
    assert dc.frechet_distance(np.zeros(4), S1, np.zeros(4), S1) == pytest.approx(0, abs=1e-6)


def test_classifier_metrics_real_vs_noise():
    _, _, xte, yte = dc.digit_split()
    real = dc.classifier_metrics(xte)
    noise = dc.classifier_metrics(torch.rand(300, 1, 8, 8, generator=_g()) * 2 - 1)
    assert real["fid"] < 10 and noise["fid"] > 100
    assert real["inception_score"] > 8.5 and noise["inception_score"] < 5
    assert real["confident_fraction"] > 0.9
    h = np.asarray(real["class_histogram"])
    assert h.shape == (10,) and h.sum() == pytest.approx(1) and h.min() > 0.05
    # the histogram matches the true label frequencies
    assert np.abs(h - np.bincount(yte.numpy(), minlength=10) / len(yte)).max() < 0.03
    # one class only: IS ~ 1
    ones = xte[yte == 1]
    assert dc.classifier_metrics(ones)["inception_score"] < 1.5
    # 16x16 digits against their own reference
    x16, _ = digits_with_labels(300, _g(1), size=16)
    m16 = dc.classifier_metrics(x16)
    assert m16["fid"] < 10 and m16["inception_score"] > 8.5
    assert dc.run_metrics("shapes", torch.zeros(4, 1, 16, 16)) == {}


# ----------------------------------------------------------------------------- DDPM on digits

def test_ddpm_on_digits_learns_and_shows_views():
    from engines.config import RunConfig, TrainConfig
    from engines.run import Run
    cfg = RunConfig(dataset="digits", family="ddpm", sampler="ddim", sampler_options=dict(steps=20),
                    train=TrainConfig(batch=64, threads=1, lr=2e-3, warmup=20))
    run = Run(cfg)
    assert run.is_image and run.data.shape == (1797, 1, 8, 8)
    before = run.evaluate(run.sample(300))
    run.train(120)
    after = run.evaluate(run.sample(300))
    assert {"fid", "inception_score", "class_histogram", "energy_distance"} <= set(after)
    # a short training already moves the samples much closer to digits
    assert after["fid"] < 0.5 * before["fid"], (before["fid"], after["fid"])
    assert after["inception_score"] > before["inception_score"]

    v = run.views(dict(level=30, n=500))
    assert set(v) == {"trajectory", "forward", "score_magnitude"}
    tr = v["trajectory"]
    assert tr["kind"] == "images" and tr["images"].shape == (4 * tr["nrow"], 1, 8, 8)
    fw = v["forward"]
    assert fw["images"].shape == (3 * 8, 1, 8, 8) and fw["nrow"] == 8
    assert np.abs(fw["images"]).max() <= 1
    sm = v["score_magnitude"]["images"]
    assert sm.shape == (8, 1, 8, 8) and sm.max() == pytest.approx(1) and sm.min() >= -1
    # points get no image views
    run2 = Run(RunConfig(dataset="moons", family="ddpm", train=TrainConfig(threads=1, n_data=200)))
    assert run2.views({}) == {}
