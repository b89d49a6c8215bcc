"""Every data format, written here as tiny files, and the preprocessing they go through."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest

import ntk_influence as ni
from ntk_influence.data import dataset_from_arrays


def _idx_bytes(arr: np.ndarray) -> bytes:
    """The IDX encoding of an unsigned-byte array (magic 0x0000 08 ndim, big-endian dims)."""
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def _mnist_arrays(seed: int = 0, n_tr: int = 60, n_te: int = 30):
    rng = np.random.default_rng(seed)
    ytr = np.arange(n_tr) % 10
    yte = np.arange(n_te) % 10
    xtr = rng.integers(1, 256, size=(n_tr, 28, 28))
    xte = rng.integers(1, 256, size=(n_te, 28, 28))
    return xtr, ytr, xte, yte


def write_mnist(directory, gz: bool, seed: int = 0):
    xtr, ytr, xte, yte = _mnist_arrays(seed)
    directory.mkdir(parents=True, exist_ok=True)
    files = {"train-images-idx3-ubyte": xtr, "train-labels-idx1-ubyte": ytr,
             "t10k-images-idx3-ubyte": xte, "t10k-labels-idx1-ubyte": yte}
    for name, arr in files.items():
        raw = _idx_bytes(arr)
        if gz:
            (directory / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)
    return xtr, ytr, xte, yte


def write_cifar(directory, per_batch: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(1, 256, size=(per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.permutation(np.arange(per_batch) % 10)]
        with open(directory / name, "wb") as f:
            pickle.dump({b"data": x, b"labels": y, b"batch_label": name.encode()}, f)
        batches[name] = (x, np.asarray(y))
    return batches


# ---------------------------------------------------------------- MNIST

@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, gz):
    xtr, ytr, xte, yte = write_mnist(tmp_path / "mnist", gz)
    ds = ni.load_dataset(f"mnist:{tmp_path / 'mnist'}:3,8", n_train=8, n_test=4, seed=1)
    assert ds.x_train.shape == (8, 784) and ds.x_test.shape == (4, 784)
    assert ds.image_shape == (28, 28) and ds.classes == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(ds.x_train, axis=1), 1.0, rtol=1e-12)
    # each row is the unit-normalised source image it claims to be, with the right label
    for row, src in zip(ds.x_train, ds.train_index):
        raw = xtr[src].ravel() / 255.0
        np.testing.assert_allclose(row, raw / np.linalg.norm(raw), rtol=1e-12)
        assert ytr[src] in (3, 8)
    np.testing.assert_array_equal(ds.y_train, np.where(ytr[ds.train_index] == 3, 1.0, -1.0))
    np.testing.assert_array_equal(ds.class_test, yte[ds.test_index])
    assert sorted(np.unique(ds.y_train).tolist()) == [-1.0, 1.0]


def test_mnist_gz_and_plain_agree(tmp_path):
    write_mnist(tmp_path / "a", gz=False)
    write_mnist(tmp_path / "b", gz=True)
    a = ni.load_dataset(f"mnist:{tmp_path / 'a'}", n_train=20, n_test=10)
    b = ni.load_dataset(f"mnist:{tmp_path / 'b'}", n_train=20, n_test=10)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert a.y_train.shape == (20, 10)  # all ten classes, one-hot
    np.testing.assert_array_equal(a.y_train.sum(axis=1), 1.0)


def test_mnist_missing_and_malformed(tmp_path):
    with pytest.raises(ni.InputError, match=r"mnist directory .*nope does not exist"):
        ni.load_dataset(f"mnist:{tmp_path / 'nope'}")
    with pytest.raises(ni.InputError, match="needs a directory"):
        ni.load_dataset("mnist:")
    d = tmp_path / "m"
    write_mnist(d, gz=False)
    (d / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(ni.InputError, match=r"missing t10k-labels-idx1-ubyte\[\.gz\] in .*m"):
        ni.load_dataset(f"mnist:{d}")
    (d / "t10k-labels-idx1-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(ni.InputError, match="bad magic number"):
        ni.load_dataset(f"mnist:{d}")
    # an image file where the labels belong
    (d / "t10k-labels-idx1-ubyte").write_bytes((d / "t10k-images-idx3-ubyte").read_bytes())
    with pytest.raises(ni.InputError, match="label file"):
        ni.load_dataset(f"mnist:{d}")
    # truncated data
    raw = _idx_bytes(np.arange(30) % 10)
    (d / "t10k-labels-idx1-ubyte").write_bytes(raw[:-5])
    with pytest.raises(ni.InputError, match="truncated"):
        ni.load_dataset(f"mnist:{d}")
    # a .gz that is not gzip
    g = tmp_path / "g"
    write_mnist(g, gz=True)
    (g / "train-images-idx3-ubyte.gz").write_bytes(b"\x00\x00\x08\x03 plain bytes")
    with pytest.raises(ni.InputError, match="gzip"):
        ni.load_dataset(f"mnist:{g}")
    # images and labels disagree in number
    (d / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.arange(29) % 10))
    with pytest.raises(ni.InputError, match="disagree"):
        ni.load_dataset(f"mnist:{d}")


# ---------------------------------------------------------------- CIFAR-10

def test_cifar_batches(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py")
    # both the batch folder and its parent are accepted
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):
        ds = ni.load_dataset(f"cifar10:{root}:3,5", n_train=6, n_test=2, seed=0)
        assert ds.x_train.shape == (6, 3072) and ds.image_shape == (32, 32, 3)
        assert set(ds.class_train.tolist()) == {3, 5}
    xall = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    src = xall[ds.train_index[0]].reshape(3, 32, 32).transpose(1, 2, 0).ravel() / 255.0
    np.testing.assert_allclose(ds.x_train[0], src / np.linalg.norm(src), rtol=1e-12)


def test_cifar_missing_and_malformed(tmp_path):
    with pytest.raises(ni.InputError, match=r"cifar10 directory .* does not exist"):
        ni.load_dataset(f"cifar10:{tmp_path / 'none'}")
    d = tmp_path / "c"
    write_cifar(d)
    (d / "data_batch_4").unlink()
    with pytest.raises(ni.InputError, match="missing data_batch_4 in"):
        ni.load_dataset(f"cifar10:{d}")
    (d / "data_batch_4").write_bytes(b"garbage")
    with pytest.raises(ni.InputError, match="data_batch_4 is not a readable CIFAR-10"):
        ni.load_dataset(f"cifar10:{d}")
    with open(d / "data_batch_4", "wb") as f:
        pickle.dump({b"labels": [1]}, f)
    with pytest.raises(ni.InputError, match="no b'data' entry"):
        ni.load_dataset(f"cifar10:{d}")
    with open(d / "data_batch_4", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}, f)
    with pytest.raises(ni.InputError, match="3072"):
        ni.load_dataset(f"cifar10:{d}")


# ---------------------------------------------------------------- npz and arrays

def test_npz_targets_as_given(tmp_path):
    rng = np.random.default_rng(0)
    x, xt = rng.normal(size=(30, 5)), rng.normal(size=(10, 5))
    y, yt = np.sign(x[:, 0]), np.sign(xt[:, 0])
    p = tmp_path / "d.npz"
    np.savez(p, x_train=x, y_train=y, x_test=xt, y_test=yt)
    ds = ni.load_dataset(f"npz:{p}", n_train=None, n_test=None)
    # all points, in the order given
    np.testing.assert_array_equal(ds.train_index, np.arange(30))
    np.testing.assert_allclose(ds.x_train, x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_array_equal(ds.y_train, y)
    # asking for more than there is keeps everything; fewer subsamples stratified by sign
    assert ni.load_dataset(f"npz:{p}", n_train=200, n_test=50).x_train.shape == (30, 5)
    sub = ni.load_dataset(f"npz:{p}", n_train=10, n_test=4)
    assert sub.x_train.shape == (10, 5)
    share = np.mean(y > 0)
    assert abs(np.mean(sub.y_train > 0) - share) <= 0.1 + 1e-12


def test_npz_integer_classes_and_images(tmp_path):
    rng = np.random.default_rng(1)
    x, xt = rng.random((40, 4, 4)) + 0.1, rng.random((12, 4, 4)) + 0.1
    y, yt = np.arange(40) % 4, np.arange(12) % 4
    p = tmp_path / "img.npz"
    np.savez(p, x_train=x, y_train=y, x_test=xt, y_test=yt)
    pair = ni.load_dataset(f"npz:{p}:2,1", n_train=None, n_test=None)
    assert pair.classes == (2, 1) and pair.image_shape == (4, 4)
    np.testing.assert_array_equal(pair.y_train, np.where(y[pair.train_index] == 2, 1.0, -1.0))
    assert set(y[pair.train_index].tolist()) == {1, 2} and pair.x_train.shape == (20, 16)
    multi = ni.load_dataset(f"npz:{p}", n_train=20, n_test=8)
    assert multi.y_train.shape == (20, 4)
    np.testing.assert_array_equal(np.bincount(multi.class_train), [5, 5, 5, 5])


def test_npz_missing_and_malformed(tmp_path):
    with pytest.raises(ni.InputError, match=r"npz file .*absent\.npz not found"):
        ni.load_dataset(f"npz:{tmp_path / 'absent.npz'}")
    p = tmp_path / "partial.npz"
    np.savez(p, x_train=np.ones((3, 2)), y_train=np.ones(3))
    with pytest.raises(ni.InputError, match=r"lacks array\(s\) \['x_test', 'y_test'\]"):
        ni.load_dataset(f"npz:{p}")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip archive")
    with pytest.raises(ni.InputError, match=r"not an \.npz file"):
        ni.load_dataset(f"npz:{bad}")
    q = tmp_path / "rows.npz"
    np.savez(q, x_train=np.ones((3, 2)), y_train=np.ones(4), x_test=np.ones((2, 2)),
             y_test=np.ones(2))
    with pytest.raises(ni.InputError, match="y_train has shape"):
        ni.load_dataset(f"npz:{q}")


def test_arrays_from_python():
    rng = np.random.default_rng(2)
    x, xt = rng.normal(size=(20, 3)), rng.normal(size=(6, 3))
    y = np.eye(3)[np.arange(20) % 3]
    ds = dataset_from_arrays(x, y, xt, np.eye(3)[np.arange(6) % 3], label_noise=0.25, seed=3)
    assert ds.noisy_index.size == 5 and ds.y_train.shape == (20, 3)
    clean = y[ds.train_index]
    changed = np.flatnonzero(np.any(ds.y_train != clean, axis=1))
    np.testing.assert_array_equal(changed, ds.noisy_index)
    with pytest.raises(ni.InputError, match="point shape"):
        dataset_from_arrays(x, y, xt[:, :2], y[:6])
    with pytest.raises(ni.InputError, match="integer class labels"):
        dataset_from_arrays(x, 0.5 * x[:, 0], xt, 0.5 * xt[:, 0], classes=(1, 2))
    with pytest.raises(ni.InputError, match="NaN/Inf"):
        dataset_from_arrays(np.full((2, 2), np.nan), np.ones(2), xt[:, :2], np.ones(6))


# ---------------------------------------------------------------- digits, stratification, noise

def test_digits_pair_and_multiclass():
    pair = ni.load_dataset("digits:3,8", n_train=50, n_test=20, seed=0)
    assert pair.x_train.shape == (50, 64) and pair.classes == (3, 8)
    np.testing.assert_array_equal(pair.y_train, np.where(pair.class_train == 3, 1.0, -1.0))
    assert "unit norm" in pair.preprocessing
    multi = ni.load_dataset("digits", n_train=100, n_test=30, seed=0)
    assert multi.y_train.shape == (100, 10) and multi.classes == tuple(range(10))
    np.testing.assert_array_equal(np.argmax(multi.y_train, axis=1), multi.class_train)
    np.testing.assert_array_equal(np.bincount(multi.class_train), [10] * 10)
    # classes argument overrides the spec; same seed -> same subsample
    again = ni.load_dataset("digits", classes="3,8", n_train=50, n_test=20, seed=0)
    np.testing.assert_array_equal(again.x_train, pair.x_train)
    other = ni.load_dataset("digits:3,8", n_train=50, n_test=20, seed=1)
    assert not np.array_equal(other.train_index, pair.train_index)


def test_stratification_keeps_class_shares():
    ds = ni.load_dataset("digits:1,2,7", n_train=31, n_test=11, seed=4)
    counts = np.bincount(ds.class_train, minlength=8)[[1, 2, 7]]
    assert counts.sum() == 31 and counts.max() - counts.min() <= 1
    assert len(set(ds.train_index.tolist())) == 31


def test_label_noise_bookkeeping():
    clean = ni.load_dataset("digits:3,8", n_train=40, n_test=10, seed=5)
    noisy = ni.load_dataset("digits:3,8", n_train=40, n_test=10, seed=5, label_noise=0.4)
    np.testing.assert_array_equal(noisy.x_train, clean.x_train)
    assert noisy.noisy_index.size == 16
    flipped = np.flatnonzero(noisy.y_train != clean.y_train)
    np.testing.assert_array_equal(flipped, noisy.noisy_index)
    np.testing.assert_array_equal(noisy.y_train[flipped], -clean.y_train[flipped])
    # the original classes survive the noise, so clean/noisy points can be told apart later
    np.testing.assert_array_equal(noisy.class_train, clean.class_train)
    assert "16 training labels flipped" in noisy.preprocessing
    assert noisy.describe()["n_noisy"] == 16
    with pytest.raises(ni.InputError, match=r"\[0, 1\)"):
        ni.data.flip_labels(clean.y_train, 1.0)
    y, idx = ni.data.flip_labels(np.eye(4)[[0, 1, 2, 3, 0, 1]], 0.5, seed=0)
    assert idx.size == 3 and np.all(y.sum(axis=1) == 1)
    assert np.all(np.argmax(y[idx], 1) != np.argmax(np.eye(4)[[0, 1, 2, 3, 0, 1]][idx], 1))


def test_bad_specs():
    with pytest.raises(ni.InputError, match="unknown data spec"):
        ni.load_dataset("imagenet:/x")
    with pytest.raises(ni.InputError, match="comma-separated integers"):
        ni.load_dataset("digits:three,eight")
    with pytest.raises(ni.InputError, match="two distinct classes"):
        ni.load_dataset("digits:3,3")
    with pytest.raises(ni.InputError, match=r"classes \[11\] do not occur"):
        ni.load_dataset("digits:3,11")
    with pytest.raises(ni.InputError, match="asked for 1000 points"):
        ni.load_dataset("digits:3,8", n_train=1000)
    with pytest.raises(ni.InputError, match=">= 1"):
        ni.load_dataset("digits:3,8", n_train=0)
    with pytest.raises(ni.InputError, match="all zeros"):
        ni.data.unit_normalize(np.zeros((2, 3)))
