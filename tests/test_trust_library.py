"""Library inputs are checked up front, and every message names the caller's argument and the fix."""

from __future__ import annotations

import gzip
import struct
import tracemalloc

import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from test_data import _idx_bytes, write_mnist

import ntk_influence as ni
from ntk_influence._validate import check_whole
from ntk_influence.data import dataset_from_arrays


def _base(n=4, d=5, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def _exact_unit(x):
    """``x_i / ||x_i||`` of the stored float64 values, in 60-digit arithmetic."""
    out = np.empty_like(x)
    with mpmath.workdps(60):
        for i, row in enumerate(x):
            vals = [mpmath.mpf(float(v)) for v in row]
            nrm = mpmath.sqrt(mpmath.fsum(v * v for v in vals))
            out[i] = [float(v / nrm) for v in vals]
    return out


# ------------------------------------------------------------------ 1. unit norm at any scale

# name: rows of the input (each row its own scale)
SCALES = {
    "huge 1e200": _base() * 1e200,
    "tiny 1e-160": _base() * 1e-160,
    "near overflow 1e300": _base() * 1e300,
    "near underflow 1e-300": _base() * 1e-300,
    "subnormal entries": _base() * 1e-310,
    "mixed scales by row": _base() * np.array([[1e200], [1e-160], [1.0], [3e-5]]),
    "image-shaped rows": _base(3, 12).reshape(3, 3, 4) * 1e250,
}


@pytest.mark.parametrize("case", sorted(SCALES))
def test_unit_normalize_is_exact_at_any_scale(case):
    x = SCALES[case]
    out = ni.data.unit_normalize(x)
    flat = out.reshape(len(out), -1)
    ref = _exact_unit(x.reshape(len(x), -1))
    np.testing.assert_allclose(flat, ref, rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(flat, axis=1), 1.0, rtol=0, atol=1e-15)
    _, rep = ni.data.ensure_unit_norm(x, "x_train", normalize=True)
    assert rep.n_renormalized == len(x)


def test_huge_rows_are_reported_with_their_true_norm():
    x = _base() * 1e200
    with pytest.raises(ni.InputError, match=r"x_train\[\d\] has norm \d\.\d+e\+200"):
        ni.data.ensure_unit_norm(x, "x_train")


# name: (input, what the message must say)
ZERO_ROWS = {
    "zero row": (np.vstack([_base(2), np.zeros((1, 5))]), r"x\[2\] is all zeros.*drop that point"),
    "all zero": (np.zeros((2, 3)), r"x\[0\] is all zeros"),
}


@pytest.mark.parametrize("case", sorted(ZERO_ROWS))
def test_zero_rows_raise_clearly(case):
    x, msg = ZERO_ROWS[case]
    with pytest.raises(ni.InputError, match=msg):
        ni.data.unit_normalize(x)


def test_tiny_inputs_with_normalize_match_unit_inputs():
    # Used to end in "x1[0] has norm 1.0004 ... pass normalize=True" although it was passed.
    x, xt = _base(8, 5, 1), _base(3, 5, 2)
    y, yt = np.sign(x[:, 0]), np.sign(xt[:, 0])
    a = ni.ntk_influence(x * 1e-160, y, xt * 1e200, yt, normalize=True)
    b = ni.ntk_influence(ni.data.unit_normalize(x), y, ni.data.unit_normalize(xt), yt)
    np.testing.assert_allclose(a.influence, b.influence, rtol=0, atol=1e-13)


# ------------------------------------------------------------------ 2. loader numbers up front

def _arrays():
    rng = np.random.default_rng(0)
    return rng.normal(size=(12, 4)), np.arange(12) % 2, rng.normal(size=(6, 4)), np.arange(6) % 2


# name: (keyword arguments of load_dataset, message)
LOAD_ERRORS = {
    "seed negative": ({"seed": -1}, r"seed must be >= 0, got -1"),
    "seed float": ({"seed": 1.5}, r"seed must be a whole number >= 0, got 1.5"),
    "seed bool": ({"seed": True}, r"seed must be a whole number >= 0, got True"),
    "seed string": ({"seed": "3"}, r"seed must be a whole number"),
    "label_noise one": ({"label_noise": 1.0}, r"label_noise must be in \[0, 1\)"),
    "label_noise negative": ({"label_noise": -0.1}, r"label_noise must be in \[0, 1\)"),
    "label_noise nan": ({"label_noise": float("nan")}, r"label_noise must be in \[0, 1\)"),
    "label_noise string": ({"label_noise": "0.1"}, r"label_noise must be a number in \[0, 1\)"),
    "label_noise bool": ({"label_noise": True}, r"label_noise must be a number"),
    "center string": ({"center": "yes"}, r"center must be True or False"),
    "n_train float": ({"n_train": 20.0}, r"n_train must be a whole number >= 1 \(or None\)"),
    "n_test zero": ({"n_test": 0}, r"n_test must be >= 1"),
    # checked before the directory is looked at
    "mnist seed first": ({"spec": "mnist:/no/such/dir", "seed": -1}, r"seed must be >= 0"),
}


@pytest.mark.parametrize("case", sorted(LOAD_ERRORS))
def test_load_dataset_checks_numbers_first(case):
    kw, msg = LOAD_ERRORS[case]
    kw = {"spec": "digits:3,8", "n_train": 20, "n_test": 5, **kw}
    with pytest.raises(ni.InputError, match=msg):
        ni.load_dataset(**kw)


# name: (keyword arguments of dataset_from_arrays, message)
ARRAY_ERRORS = {
    "seed negative": ({"seed": -1}, "seed must be >= 0"),
    "label_noise too big": ({"label_noise": 1.5}, r"label_noise must be in \[0, 1\)"),
    "image_shape wrong size": ({"image_shape": (3, 3)}, r"image_shape \(3, 3\) holds 9 values but"),
    "image_shape float": ({"image_shape": (2, 2.0)}, "image_shape entries must be a whole number"),
    "image_shape not a tuple": ({"image_shape": 4}, "image_shape must be a tuple"),
    "name not a string": ({"name": 3}, "name must be a string"),
    "n_train bool": ({"n_train": False}, "n_train must be a whole number"),
}


@pytest.mark.parametrize("case", sorted(ARRAY_ERRORS))
def test_dataset_from_arrays_checks_numbers(case):
    kw, msg = ARRAY_ERRORS[case]
    with pytest.raises(ni.InputError, match=msg):
        dataset_from_arrays(*_arrays(), **kw)


def test_valid_numbers_still_load():
    ds = ni.load_dataset("digits:3,8", n_train=20, n_test=5, seed=np.int64(2), label_noise=0.1)
    assert ds.x_train.shape[0] == 20 and ds.noisy_index.size == 2
    ds = dataset_from_arrays(*_arrays(), image_shape=(2, 2), seed=1)
    assert ds.image_shape == (2, 2)


def test_zero_row_names_the_set_and_the_cause():
    x, y, xt, yt = _arrays()
    with pytest.raises(ni.InputError, match=r"x_train\[12\] is all zeros, and .*drop that point"):
        dataset_from_arrays(np.vstack([x, np.zeros((1, 4))]), np.append(y, 0), xt, yt)
    xm = np.array([[1.0] * 4, [1.0] * 4, [3.0] * 4, [3.0] * 4, [2.0] * 4])  # the last is the mean
    with pytest.raises(ni.InputError, match=r"x_train\[4\] is all zeros after centring on the "
                                            r"training mean .*center=False"):
        dataset_from_arrays(xm, np.arange(5) % 2, xt, yt, center=True)


# ------------------------------------------------------------------ 3. IDX headers and gzip bombs

def _idx_header(dims):
    return bytes([0, 0, 0x08, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)


def _mnist_with(tmp_path, name, data: bytes):
    """A gzipped MNIST directory with one file replaced (gzipped or plain, as ``data`` is)."""
    d = tmp_path / "m"
    write_mnist(d, gz=True)
    (d / (name + ".gz")).unlink()
    gz = data[:2] == b"\x1f\x8b"
    (d / (name + ".gz" if gz else name)).write_bytes(data)
    return f"mnist:{d}"


BIG = 2**32 - 1
# name: (file name, its bytes, message)
IDX_ERRORS = {
    "dims overflow int64, plain": ("train-images-idx3-ubyte", _idx_header([BIG, BIG, BIG]) + b"\0" * 64,
                                   r"is truncated: its header says \[4294967295, 4294967295, "),
    "dims beyond the file, plain": ("train-labels-idx1-ubyte", _idx_header([10**9]) + b"\0" * 10,
                                    r"header says \[1000000000\] \(1000000000 bytes of data\), "
                                    r"found 10 bytes"),
    "dims overflow, gzip": ("train-images-idx3-ubyte",
                            gzip.compress(_idx_header([BIG, BIG, BIG]) + b"\0" * 64),
                            r"more than a \d+-byte gzip file can decompress to.*refused before"),
    "gzip stream short": ("train-images-idx3-ubyte",
                          gzip.compress(_idx_header([60, 28, 28])
                                        + np.random.default_rng(0).bytes(2000)),
                          r"is truncated: its header says \[60, 28, 28\] \(47040 bytes of data\), "
                          r"found 2000 bytes"),
    "gzip stream a little long": ("train-labels-idx1-ubyte",
                                  gzip.compress(_idx_bytes(np.arange(60) % 10) + b"\0\0\0"),
                                  "has 3 trailing bytes after the 60 bytes"),
    "header cut short": ("train-images-idx3-ubyte", gzip.compress(_idx_header([60, 28, 28])[:9]),
                         "truncated inside its IDX header"),
}


@pytest.mark.parametrize("case", sorted(IDX_ERRORS))
def test_idx_header_checked_against_the_file(tmp_path, case):
    name, data, msg = IDX_ERRORS[case]
    with pytest.raises(ni.InputError, match=msg):
        ni.load_dataset(_mnist_with(tmp_path, name, data), n_train=20, n_test=5)


def test_gzip_bomb_refused_in_bounded_memory(tmp_path):
    # 10 images of 28x28 declared, then 32 MiB of zeros: about 32 KiB compressed.
    bomb = gzip.compress(_idx_header([10, 28, 28]) + bytes(10 * 28 * 28) + bytes(32 << 20),
                         compresslevel=9)
    assert len(bomb) < 100_000
    spec = _mnist_with(tmp_path, "train-images-idx3-ubyte", bomb)
    tracemalloc.start()
    try:
        with pytest.raises(ni.InputError, match=r"at least 1 MiB of trailing bytes after the 7840"):
            ni.load_dataset(spec, n_train=20, n_test=5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB while refusing a 32 MiB stream"


def test_valid_idx_still_loads(tmp_path):
    for gz in (False, True):
        d = tmp_path / f"ok{gz}"
        write_mnist(d, gz=gz)
        ds = ni.load_dataset(f"mnist:{d}", n_train=None, n_test=None, classes=(3, 8))
        assert ds.x_train.shape == (12, 784)


# ------------------------------------------------------------------ 4. memory_plan arguments

# name: (positional arguments, keyword arguments, message)
PLAN_ERRORS = {
    "n a string": (("abc",), {}, r"n must be a whole number >= 1, got 'abc'"),
    "n_test missing": ((10,), {}, r"memory_plan needs n \(training points\), n_test"),
    "n_test a string": ((10, "x", 3), {}, "n_test must be a whole number"),
    "d a float": ((10, 5, 3.5), {}, "d must be a whole number"),
    "n zero": ((0, 5, 3), {}, "n must be >= 1"),
    "outputs float": ((10, 5, 3), {"outputs": 1.5}, "outputs must be a whole number"),
    "n_devices bool": ((10, 5, 3), {"n_devices": True}, "n_devices must be a whole number"),
    "test_block zero": ((10, 5, 3), {"test_block": 0}, "test_block must be >= 1"),
    "kernel_block float": ((10, 5, 3), {"kernel_block": 2.5}, "kernel_block must be a whole number"),
    "dtype complex": ((10, 5, 3), {"dtype": np.complex128}, "dtype must be float32 or float64"),
    "dtype nonsense": ((10, 5, 3), {"dtype": "abc"}, "dtype must be float32 or float64"),
    "device_memory negative": ((10, 5, 3), {"device_memory": -1}, "device_memory must be a finite"),
    "host_memory string": ((10, 5, 3), {"host_memory": "lots"}, "host_memory must be a number"),
    "host_memory bool": ((10, 5, 3), {"host_memory": True}, "host_memory must be a number"),
    "backend unknown": ((10, 5, 3), {"backend": 3}, "backend must be 'auto', 'lapack' or 'jax'"),
    "keep_alpha string": ((10, 5, 3), {"keep_alpha": "yes"}, "keep_alpha must be True or False"),
}


@pytest.mark.parametrize("case", sorted(PLAN_ERRORS))
def test_memory_plan_checks_every_argument(case):
    args, kw, msg = PLAN_ERRORS[case]
    with pytest.raises(ni.InputError, match=msg):
        ni.linalg.memory_plan(*args, **kw)


def test_memory_plan_accepts_byte_counts_as_floats():
    plan = ni.linalg.memory_plan(100, 10, 5, backend="lapack", host_memory=4.5e9)
    assert plan.fits and plan.host_memory == 4_500_000_000


# ------------------------------------------------------------------ 5. batch-dependent models

def _batch_norm_like(p, x):
    o = x @ p["w"]
    return o - jnp.mean(o)


def _per_example(p, x):
    return jnp.tanh(x @ p["w"])


def _entk_data():
    rng = np.random.default_rng(3)
    x, xt = rng.normal(size=(8, 3)), rng.normal(size=(4, 3))
    return {"w": jnp.asarray(rng.normal(size=3))}, x, np.sign(x[:, 0]), xt, np.sign(xt[:, 0])


# name: (call, message)
BATCH_CASES = {
    "entk_influence, mean over the batch": (
        lambda p, x, y, xt, yt: ni.entk_influence(_batch_norm_like, p, x, y, xt, yt),
        r"outputs depend on the batch: 4 points of x_train evaluated together"),
    "model_entk, mean over the batch": (
        lambda p, x, y, xt, yt: ni.influence.model_entk(_batch_norm_like, p, x),
        r"outputs depend on the batch.*batch normalisation"),
    "one training point, the test points join the probe": (
        lambda p, x, y, xt, yt: ni.entk_influence(_batch_norm_like, p, x[:1], y[:1], xt, yt),
        r"points of x_train and x_test evaluated together"),
}


@pytest.mark.parametrize("case", sorted(BATCH_CASES))
def test_batch_dependent_model_refused(case):
    call, msg = BATCH_CASES[case]
    with pytest.raises(ni.InputError, match=msg):
        call(*_entk_data())


def test_per_example_model_passes_the_batch_check():
    p, x, y, xt, yt = _entk_data()
    res = ni.entk_influence(_per_example, p, x, y, xt, yt)
    assert np.abs(res.influence).max() > 0


# ------------------------------------------------------------------ 6. messages name the caller's argument

def _unit_xy():
    x = ni.data.unit_normalize(_base(8, 4, 5))
    return x, np.sign(x[:, 0]), x[:3], np.sign(x[:3, 1])


# name: (call, message that must appear, text that must not)
MESSAGES = {
    "kernel_matrix names given": (
        lambda: ni.kernels.kernel_matrix("paper", 3 * _base(), names=("x_train", "x_test")),
        r"^x_train\[\d\] has norm", "x1"),
    "kernel_matrix has no normalize argument": (
        lambda: ni.kernels.kernel_matrix("paper", 3 * _base()),
        r"ni\.unit_normalize \(the influence functions do it when passed normalize=True\)",
        "pass normalize=True"),
    "kernel_matrix shapes name both": (
        lambda: ni.kernels.kernel_matrix("paper", _base(), _base(3, 4), names=("x_train", "x_test")),
        r"x_train points have shape \(5,\) but x_test points \(4,\)", "x1"),
    "complex dtype argument, ntk_influence": (
        lambda: ni.ntk_influence(*_unit_xy(), dtype=np.complex128),
        r"dtype must be float32 or float64 \(the precision of the computation, not of the data\)",
        "k_train"),
    "complex dtype argument, kernel_matrix": (
        lambda: ni.kernels.kernel_matrix("paper", _unit_xy()[0], dtype=np.complex64),
        "dtype must be float32 or float64", "complex ("),
    "complex dtype argument, entk": (
        lambda: ni.influence.model_entk(_per_example, _entk_data()[0], _base(3, 3),
                                        dtype=np.complex128),
        "dtype must be float32 or float64", "k_train"),
    "complex dtype argument, factorize": (
        lambda: ni.linalg.factorize(np.eye(3), np.ones(3), 0.1, dtype=complex),
        "dtype must be float32 or float64", "k_train"),
    "complex data still says data": (
        lambda: ni.linalg.factorize(np.eye(3) * (1 + 1j), np.ones(3), 0.1),
        r"k_train is complex \(complex128\)", "dtype must"),
    "unit_normalize takes the caller's name": (
        lambda: ni.data.unit_normalize(np.zeros((2, 3)), "x_test"),
        r"^x_test\[0\] is all zeros", "centre"),
}


@pytest.mark.parametrize("case", sorted(MESSAGES))
def test_messages_name_the_argument_and_fix(case):
    call, msg, absent = MESSAGES[case]
    with pytest.raises(ni.InputError, match=msg) as err:
        call()
    assert absent not in str(err.value)


# ------------------------------------------------------------------ 7. whole numbers

# name: (call, message)
WHOLE = {
    "kernel_matrix block_size float": (
        lambda: ni.kernels.kernel_matrix("paper", _unit_xy()[0], block_size=2.5),
        "block_size must be a whole number >= 1, got 2.5"),
    "kernel_matrix block_size bool": (
        lambda: ni.kernels.kernel_matrix("paper", _unit_xy()[0], block_size=True),
        "block_size must be a whole number"),
    "kernel_matrix block_size zero": (
        lambda: ni.kernels.kernel_matrix("paper", _unit_xy()[0], block_size=0), "block_size must be >= 1"),
    "paper_stax d float": (lambda: ni.kernels.paper_stax(3.0), "d must be a whole number"),
    "paper_stax width bool": (lambda: ni.kernels.paper_stax(3, width=True), "width must be a whole"),
    "paper_kernel kappa string": (lambda: ni.kernels.paper_kernel("both", kappa="a"),
                                  "kappa must be a number > 0"),
    "paper_kernel kappa unhashable": (lambda: ni.kernels.paper_kernel("both", kappa=[1]),
                                      "kappa must be a number > 0"),
    "paper_kernel kappa negative": (lambda: ni.kernels.paper_kernel("both", kappa=-1),
                                    "kappa must be finite and > 0"),
    "entk block_size float": (
        lambda: ni.influence.model_entk(_per_example, _entk_data()[0], _base(3, 3), block_size=2.0),
        "block_size must be a whole number >= 1 \\(or None\\)"),
    "flip_labels seed float": (lambda: ni.data.flip_labels(np.ones(4), 0.5, seed=1.5),
                               "seed must be a whole number >= 0"),
    "flip_labels fraction string": (lambda: ni.data.flip_labels(np.ones(4), "0.5"),
                                    r"fraction must be a number in \[0, 1\)"),
}


@pytest.mark.parametrize("case", sorted(WHOLE))
def test_whole_numbers_refuse_bools_and_floats(case):
    call, msg = WHOLE[case]
    with pytest.raises(ni.InputError, match=msg):
        call()


def test_check_whole_folds_the_count_check():
    assert check_whole(None, "n_train", allow_none=True) is None
    assert check_whole(np.int32(3), "n_train") == 3
    with pytest.raises(ni.InputError, match=r"n_train must be a whole number >= 1, got None"):
        check_whole(None, "n_train")
