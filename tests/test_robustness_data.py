"""Hostile and malformed data: files that cannot run code, and a clear InputError for each case."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest
from test_data import _idx_bytes, write_mnist

import ntk_influence as ni
from ntk_influence.data import dataset_from_arrays

# ---------------------------------------------------------------- CIFAR-10 pickles


class _Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 byte strings, as the official CIFAR-10 batches hold them."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_str8(self, obj):
        b = obj.encode("latin1") if isinstance(obj, str) else obj
        n = len(b)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256
                    else pickle.BINSTRING + struct.pack("<i", n)) + b)
        self.memoize(obj)

    dispatch[bytes] = _save_str8
    dispatch[str] = _save_str8


def _official_style(obj) -> bytes:
    """A protocol-2 pickle like the official 'python version' batches (numpy.core globals)."""
    f = io.BytesIO()
    _Py2Pickler(f, protocol=2).dump(obj)
    return f.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def _batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"batch_label": "training batch", "labels": [int(c) for c in np.arange(n) % 10],
            "data": rng.integers(1, 256, size=(n, 3072)).astype(np.uint8),
            "filenames": [f"img_{i}.png" for i in range(n)]}


class _Payload:
    """Creates the directory ``marker`` when unpickled by a plain ``pickle.load``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _write_cifar(directory, dumps, hostile=None):
    """All six batches through ``dumps``; ``hostile`` replaces data_batch_3's bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        (directory / name).write_bytes(dumps(_batch(20, i)))
    if hostile is not None:
        (directory / "data_batch_3").write_bytes(hostile)


@pytest.mark.parametrize("dumps", [
    _official_style,
    lambda d: pickle.dumps({k.encode(): v for k, v in d.items()}, protocol=3),
    lambda d: pickle.dumps({k.encode(): v for k, v in d.items()}, protocol=4),
    lambda d: pickle.dumps({k.encode(): v for k, v in d.items()}, protocol=5),
    lambda d: pickle.dumps(d, protocol=4),  # str keys
], ids=["official-py2", "bytes-keys-p3", "bytes-keys-p4", "bytes-keys-p5", "str-keys-p4"])
def test_valid_cifar_batches_load(tmp_path, dumps):
    _write_cifar(tmp_path, dumps)
    ds = ni.load_dataset(f"cifar10:{tmp_path}:3,5", n_train=None, n_test=None)
    assert ds.x_train.shape == (20, 3072) and set(ds.class_train.tolist()) == {3, 5}
    xall = np.concatenate([_batch(20, i)["data"] for i in range(5)])
    src = xall[ds.train_index[0]].reshape(3, 32, 32).transpose(1, 2, 0).ravel() / 255.0
    np.testing.assert_allclose(ds.x_train[0], src / np.linalg.norm(src), rtol=1e-12)


def _hostile_whole(marker, proto):
    return pickle.dumps(_Payload(marker), protocol=proto)


def _hostile_hidden(marker, proto):
    d = {k.encode(): v for k, v in _batch(20, 2).items()}
    d[b"filenames"][7] = _Payload(marker)
    return pickle.dumps(d, protocol=proto)


def _hostile_hidden_official(marker, proto):
    d = _batch(20, 2)
    d["labels"] = [*d["labels"][:-1], _Payload(marker)]
    return _official_style(d)


@pytest.mark.parametrize(("make", "proto"), [
    (_hostile_whole, 2), (_hostile_whole, 5), (_hostile_hidden, 3), (_hostile_hidden, 5),
    (_hostile_hidden_official, 2)])
def test_hostile_cifar_pickles_refused_without_running(tmp_path, make, proto):
    # The payload is live: a plain unpickler runs it and creates the marker file.
    probe = tmp_path / "probe"
    pickle.loads(make(probe, proto), encoding="bytes")
    assert probe.exists()
    marker = tmp_path / "marker"
    _write_cifar(tmp_path / "c", pickle.dumps, hostile=make(marker, proto))
    with pytest.raises(ni.InputError, match=r"data_batch_3 is not a CIFAR-10 python batch: its "
                                            r"pickle asks for (posix|os|nt)\.mkdir"):
        ni.load_dataset(f"cifar10:{tmp_path / 'c'}")
    assert not marker.exists()


# ---------------------------------------------------------------- files that are not what they say

def _mnist_dir(tmp_path, gz=False):
    d = tmp_path / "m"
    write_mnist(d, gz=gz)
    return d


def _corrupt_gzip(tmp_path):
    d = _mnist_dir(tmp_path, gz=True)
    g = bytearray((d / "train-labels-idx1-ubyte.gz").read_bytes())
    g[10] ^= 0xFF  # first byte of the deflate stream: "invalid block type" (zlib.error)
    (d / "train-labels-idx1-ubyte.gz").write_bytes(bytes(g))
    return f"mnist:{d}"


def _idx_trailing(tmp_path):
    d = _mnist_dir(tmp_path)
    (d / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.arange(30) % 10) + b"\x00\x07\x07")
    return f"mnist:{d}"


def _idx_short(tmp_path):
    d = _mnist_dir(tmp_path)
    (d / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.arange(30) % 10)[:-3])
    return f"mnist:{d}"


def _file_for_dir(kind):
    def make(tmp_path):
        f = tmp_path / "afile"
        f.write_bytes(b"x")
        return f"{kind}:{f}"
    return make


def _dir_for_file(tmp_path, name):
    d = _mnist_dir(tmp_path) if name.startswith("t") else tmp_path / "c"
    if name == "data_batch_1":
        _write_cifar(d, pickle.dumps)
    target = d / name
    target.unlink()
    target.mkdir()
    return ("mnist:" if name.startswith("t") else "cifar10:") + str(d)


def _npz_dir(tmp_path):
    (tmp_path / "n.npz").mkdir()
    return f"npz:{tmp_path / 'n.npz'}"


def _npz_from(tmp_path, data: bytes):
    p = tmp_path / "a.npz"
    p.write_bytes(data)
    return f"npz:{p}"


def _npy_bytes(arr=None, header=None):
    f = io.BytesIO()
    if header is None:
        np.save(f, arr)
    else:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\x00" * 64)
    return f.getvalue()


def _npz_huge(tmp_path):
    p = tmp_path / "huge.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x_train.npy", _npy_bytes(header={"descr": "<f8", "fortran_order": False,
                                                     "shape": (10**15,)}))
        for k in ("y_train", "x_test", "y_test"):
            z.writestr(k + ".npy", _npy_bytes(np.ones(3)))
    return f"npz:{p}"


# name: (builds the spec under tmp_path, what the message must say)
FILE_ERRORS = {
    "corrupt gzip": (_corrupt_gzip, r"train-labels-idx1-ubyte\.gz cannot be read \(error: .*gzip"),
    "IDX trailing bytes": (_idx_trailing, "has 3 trailing bytes after the 30 bytes of data"),
    "IDX truncated": (_idx_short, r"is truncated: its header says \[30\]"),
    "mnist file given for directory": (_file_for_dir("mnist"), "afile is a file, but mnist:PATH "
                                       "needs a directory"),
    "cifar10 file given for directory": (_file_for_dir("cifar10"), "is a file, but cifar10:PATH"),
    "IDX directory given for file": (lambda t: _dir_for_file(t, "t10k-images-idx3-ubyte"),
                                     "t10k-images-idx3-ubyte is a directory, but an MNIST IDX file"),
    "CIFAR directory given for batch": (lambda t: _dir_for_file(t, "data_batch_1"),
                                        "data_batch_1 is a directory, but a CIFAR-10 python batch"),
    "npz directory given for file": (_npz_dir, r"n\.npz is a directory, but npz:PATH needs a \.npz"),
    "npz not a zip": (lambda t: _npz_from(t, b"\x80\x04plain bytes"), r"is not an \.npz file \(an "),
    "npz is a .npy": (lambda t: _npz_from(t, _npy_bytes(np.ones(3))), r"is not an \.npz file"),
    "npz too large": (_npz_huge, "array x_train is too large to load into memory"),
}


@pytest.mark.parametrize("case", sorted(FILE_ERRORS))
def test_bad_files_say_what_is_wrong(tmp_path, case):
    make, msg = FILE_ERRORS[case]
    with pytest.raises(ni.InputError, match=msg):
        ni.load_dataset(make(tmp_path))


def test_corrupt_gzip_is_a_zlib_error(tmp_path):
    d = tmp_path / "spec"
    d.mkdir()
    spec = _corrupt_gzip(d)
    raw = (d / "m" / "train-labels-idx1-ubyte.gz").read_bytes()
    with pytest.raises(Exception) as e:
        gzip.decompress(raw)
    assert type(e.value).__module__ == "zlib"  # not an OSError: the case needs its own handling
    with pytest.raises(ni.InputError):
        ni.load_dataset(spec)


# ---------------------------------------------------------------- arrays


def _arrays():
    rng = np.random.default_rng(5)
    return dict(x_train=rng.normal(size=(20, 3)), y_train=3 + np.arange(20) % 2,
                x_test=rng.normal(size=(6, 3)), y_test=3 + np.arange(6) % 2)


# name: (changes to the arguments, what the message must say)
ARRAY_ERRORS = {
    "complex x_train": ({"x_train": _arrays()["x_train"] * (1 + 1j)}, "x_train is complex"),
    "complex x_test": ({"x_test": _arrays()["x_test"] + 0j}, "x_test is complex"),
    "complex labels": ({"y_train": np.ones(20) + 1j}, "y_train is complex"),
    "float test labels, integer classes": ({"y_test": np.array([3, 4, 3.0, 4, 1.7, 3])},
                                           "y_test holds the non-integer value 1.7"),
    "test class absent from training": ({"y_test": np.array([3, 4, 3, 4, 5, 3])},
                                        r"y_test holds class\(es\) \[5\] that no training point"),
    "n_train not an integer": ({"n_train": 2.5}, "n_train must be a whole number.*2.5"),
    "n_test a bool": ({"n_test": True}, "n_test must be a whole number.*True"),
    "n_train zero": ({"n_train": 0}, "n_train must be >= 1"),
    "one class": ({"classes": (3,)}, r"at least two distinct classes, got \(3,\)"),
    "repeated class": ({"classes": (3, 3)}, "at least two distinct classes"),
    "fractional class": ({"classes": (3, 4.5)}, r"integer class labels, got 4\.5"),
    "bool class": ({"classes": (True, 3)}, "integer class labels, got True"),
}


@pytest.mark.parametrize("case", sorted(ARRAY_ERRORS))
def test_bad_arrays_say_what_is_wrong(case):
    change, msg = ARRAY_ERRORS[case]
    with pytest.raises(ni.InputError, match=msg):
        dataset_from_arrays(**{**_arrays(), **change})


# name: (load_dataset keyword arguments, what the message must say)
SPEC_ERRORS = {
    "one class": ({"spec": "digits", "classes": (0,)}, "at least two distinct classes"),
    "one class in the spec": ({"spec": "digits:0"}, "at least two distinct classes"),
    "n_train not an integer": ({"spec": "digits:3,8", "n_train": 2.5}, "whole number"),
    "n_test a bool": ({"spec": "digits:3,8", "n_test": False}, "whole number"),
}


@pytest.mark.parametrize("case", sorted(SPEC_ERRORS))
def test_bad_load_arguments_say_what_is_wrong(case):
    kwargs, msg = SPEC_ERRORS[case]
    with pytest.raises(ni.InputError, match=msg):
        ni.load_dataset(**kwargs)


def test_labels_never_truncated_nor_points_dropped_silently():
    a = _arrays()
    # +1/-1 integer targets with real-valued test targets: used as given, not truncated.
    yt = np.array([0.7, -0.2, 1.0, -1.0, 0.5, 0.1])
    ds = dataset_from_arrays(a["x_train"], np.where(a["y_train"] == 3, 1, -1), a["x_test"], yt)
    np.testing.assert_array_equal(ds.y_test[np.argsort(ds.test_index)], yt)
    # integer-valued floats are class labels like the integers
    ds = dataset_from_arrays(a["x_train"], a["y_train"], a["x_test"], a["y_test"].astype(float))
    assert ds.x_test.shape[0] == 6 and ds.classes == (3, 4)
    # points of other classes are left out only when classes asks for it, and it is recorded
    y3 = np.concatenate([a["y_train"][:-2], [7, 7]])
    ds = dataset_from_arrays(a["x_train"], y3, a["x_test"], a["y_test"], classes=(3, 4))
    assert ds.x_train.shape[0] == 18 and "2 train / 0 test points of other classes" in ds.preprocessing
