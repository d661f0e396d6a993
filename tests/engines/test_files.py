"""engines.data.files: good files load as (N, 2) float32; a bad file's error names it and the problem."""

import time
import zipfile

import numpy as np
import pytest
import torch

from engines.data.files import MAX_POINTS, DataFileError, load_points_file, save_points_csv


def write(tmp_path, name, content):
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    return p


def bad(path, *fragments):
    """Loading `path` raises DataFileError naming the file and containing every fragment."""
    with pytest.raises(DataFileError) as info:
        load_points_file(path)
    msg = str(info.value)
    assert msg.startswith(path.name + ":"), msg
    for f in fragments:
        assert f in msg, msg
    return msg


# ----------------------------------------------------------------------------- good files

@pytest.mark.parametrize("name,content", [
    ("h.csv", "x,y\n1,2\n3.5,-4e-1\n"),
    ("noheader.csv", "1,2\n3.5,-4e-1\n"),
    ("crlf.csv", "x,y\r\n1,2\r\n3.5,-4e-1\r\n"),
    ("quoted.csv", '"x","y"\n"1","2"\n3.5,-0.4\n'),
    ("blank_and_comments.csv", "# my points\nx,y\n\n1,2\n# middle\n3.5,-0.4\n\n"),
    ("t.tsv", "x\ty\n1\t2\n3.5\t-0.4\n"),
    ("w.txt", "1 2\n  3.5    -0.4\n"),
    ("semi.txt", "x;y\n1;2\n3.5;-0.4\n"),
])
def test_text_formats(tmp_path, name, content):
    x = load_points_file(write(tmp_path, name, content))
    assert x.dtype == torch.float32 and x.shape == (2, 2)
    assert torch.allclose(x, torch.tensor([[1.0, 2.0], [3.5, -0.4]]))


def test_bom_is_ignored(tmp_path):
    p = write(tmp_path, "bom.csv", "\ufeffx,y\n1,2\n3,4\n".encode("utf-8"))
    assert load_points_file(p).shape == (2, 2)


def test_npy_and_npz(tmp_path):
    a = np.arange(10, dtype=np.float64).reshape(5, 2)
    np.save(tmp_path / "a.npy", a)
    assert torch.equal(load_points_file(tmp_path / "a.npy"), torch.from_numpy(a).float())
    np.save(tmp_path / "i.npy", a.astype(np.int32))
    assert load_points_file(tmp_path / "i.npy").dtype == torch.float32
    np.savez(tmp_path / "first.npz", a)  # stored as arr_0
    assert load_points_file(tmp_path / "first.npz").shape == (5, 2)
    np.savez(tmp_path / "named.npz", labels=np.zeros((3, 7)), points=a)  # 'points' preferred
    assert torch.equal(load_points_file(tmp_path / "named.npz"), torch.from_numpy(a).float())


def test_save_roundtrip(tmp_path):
    x = torch.randn(100, 2)
    save_points_csv(tmp_path / "s.csv", x)
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == "x,y"
    assert torch.equal(load_points_file(tmp_path / "s.csv"), x)  # %.9g round-trips float32
    with pytest.raises(ValueError):
        save_points_csv(tmp_path / "bad.csv", torch.zeros(3, 3))


def test_200k_rows_load_fast(tmp_path):
    x = np.random.default_rng(0).normal(size=(200_000, 2))
    save_points_csv(tmp_path / "big.csv", x)
    t = time.perf_counter()
    y = load_points_file(tmp_path / "big.csv")
    assert time.perf_counter() - t < 1.0
    assert y.shape == (200_000, 2)


# ----------------------------------------------------------------------------- bad files

def test_missing(tmp_path):
    bad(tmp_path / "nope.csv", "not found")


def test_empty(tmp_path):
    bad(write(tmp_path, "e.csv", ""), "empty")
    bad(write(tmp_path, "blank.csv", "\n\n  \n"), "empty")


def test_header_only(tmp_path):
    bad(write(tmp_path, "h.csv", "x,y\n"), "header", "no data rows")


def test_text_cell(tmp_path):
    bad(write(tmp_path, "moons.csv", "x,y\n1,2\n3,abc\n"), "row 3, column 2 is 'abc', not a number")


def test_empty_cell(tmp_path):
    bad(write(tmp_path, "c.csv", "1,2\n,4\n"), "row 2, column 1 is empty")


def test_nan_inf(tmp_path):
    msg = bad(write(tmp_path, "n.csv", "x,y\n1,2\n3,nan\ninf,1\n"), "2 values", "NaN or infinite")
    assert "row 3" in msg  # the file line of the first bad value
    np.save(tmp_path / "n.npy", np.array([[0.0, 1.0], [np.nan, 2.0]]))
    bad(tmp_path / "n.npy", "1 value is NaN")


def test_too_large_for_float32(tmp_path):
    bad(write(tmp_path, "big.csv", "1,2\n1e300,4\n"), "too large")


def test_one_column(tmp_path):
    bad(write(tmp_path, "one.csv", "x\n1\n2\n3\n"),
        "expected exactly 2 numeric columns (x, y), found 1")


def test_three_columns(tmp_path):
    bad(write(tmp_path, "three.csv", "x,y,label\n1,2,0\n3,4,1\n"),
        "expected exactly 2 numeric columns (x, y), found 3")


def test_ragged(tmp_path):
    bad(write(tmp_path, "r.csv", "1,2\n3,4\n5,6,7\n"), "row 3 has 3 columns", "row 1 has 2")


def test_too_many_rows(tmp_path):
    p = tmp_path / "many.csv"
    p.write_text("0,0\n" * (MAX_POINTS + 1))
    bad(p, "1,000,001", "1,000,000")
    np.save(tmp_path / "many.npy", np.zeros((MAX_POINTS + 1, 2), dtype=np.float32))
    bad(tmp_path / "many.npy", "too many")


def test_fewer_than_two_points(tmp_path):
    bad(write(tmp_path, "one.csv", "x,y\n1,2\n"), "1 point", "at least 2")


def test_binary_named_csv(tmp_path):
    np.save(tmp_path / "real.npy", np.zeros((4, 2)))
    p = write(tmp_path, "fake.csv", (tmp_path / "real.npy").read_bytes())
    bad(p, "looks like a binary file, not CSV text")
    bad(write(tmp_path, "latin.csv", b"x,y\n1,2\n\xff\xfe,3\n"), "binary")


@pytest.mark.parametrize("arr,fragment", [
    (np.array([["a", "b"], ["c", "d"]]), "not real numbers"),
    (np.zeros(6), "shape (6,)"),
    (np.zeros((4, 3)), "shape (4, 3)"),
    (np.zeros((2, 50)), "transpose"),
    (np.zeros((3, 2), dtype=complex), "not real numbers"),
])
def test_npy_wrong_content(tmp_path, arr, fragment):
    np.save(tmp_path / "w.npy", arr)
    bad(tmp_path / "w.npy", fragment)


def test_npy_object_array_is_not_unpickled(tmp_path):
    np.save(tmp_path / "o.npy", np.array([[1, "a"], [2, None]], dtype=object), allow_pickle=True)
    bad(tmp_path / "o.npy", "Python objects")


def test_corrupted_npy_npz(tmp_path):
    bad(write(tmp_path, "c.npy", b"hello, not numpy at all"), "not a valid .npy")
    np.save(tmp_path / "t.npy", np.zeros((1000, 2)))
    truncated = (tmp_path / "t.npy").read_bytes()[:300]
    bad(write(tmp_path, "trunc.npy", truncated), "damaged")
    bad(write(tmp_path, "c.npz", b"garbage garbage"), "not a valid .npz")
    np.savez(tmp_path / "z.npz", x=np.zeros((1000, 2)))
    bad(write(tmp_path, "cut.npz", (tmp_path / "z.npz").read_bytes()[:200]), "damaged")
    with zipfile.ZipFile(tmp_path / "empty.npz", "w"):
        pass
    bad(tmp_path / "empty.npz", "no arrays")


def test_unknown_extension(tmp_path):
    bad(write(tmp_path, "pts.xlsx", "1,2\n"), "unsupported file type", ".xlsx")
    bad(write(tmp_path, "pts", "1,2\n"), "no extension")
