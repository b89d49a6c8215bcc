"""Loaders: embedded digits, MNIST (IDX), CIFAR-10 (python pickles), ``.npz`` files and arrays.

This module holds :func:`load_dataset` (a data spec such as ``digits:3,8`` or ``mnist:DIR``) and
:func:`dataset_from_arrays` (arrays in memory), with the file readers behind them. Nothing is
downloaded, and no file can run code: CIFAR-10 pickles are read by an unpickler that builds only
containers and numpy arrays, and ``.npz`` files are read with ``allow_pickle=False``. Every
loader returns a :class:`~ntk_influence.data.Dataset` whose inputs are flattened and scaled to
unit Euclidean norm (the paper assumes ``||x|| = 1``) and whose labels satisfy ``|y| <= 1``:
``+1/-1`` for a pair of classes, one-hot for several. The preprocessing applied is recorded in
``Dataset.preprocessing``.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .._validate import as_array, check_classes, check_whole
from ..errors import InputError
from ._dataset import Dataset, center_and_normalize, check_fraction, encode, flip_labels
from ._idx import read_idx


def _stratified(labels: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices of a class-stratified random subsample of size ``n`` (all if None)."""
    if n is None or n >= labels.size:
        if n is not None and n > labels.size:
            raise InputError(f"asked for {n} points but only {labels.size} are available.")
        return rng.permutation(labels.size)
    if n < 1:
        raise InputError(f"the number of points must be >= 1, got {n}.")
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(n * counts / counts.sum()).astype(int)
    for j in np.argsort(-(n * counts / counts.sum() - quota))[: n - quota.sum()]:
        quota[j] += 1
    idx = [rng.choice(np.flatnonzero(labels == c), q, replace=False) for c, q in zip(classes, quota)]
    return rng.permutation(np.concatenate(idx))


def _select(labels: np.ndarray, n: int | None, rng: np.random.Generator,
            keep_order: bool) -> np.ndarray:
    """Stratified subsample; with ``keep_order`` and ``n`` None, all points in their order."""
    if n is None and keep_order:
        return np.arange(labels.size)
    return _stratified(labels, n, rng)


def _find(directory: Path, stem: str) -> Path:
    for cand in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / cand).is_file():
            return directory / cand
        if (directory / cand).is_dir():
            raise InputError(f"{directory / cand} is a directory, but an MNIST IDX file "
                             f"({stem}[.gz]) was expected there.")
    raise InputError(f"missing {stem}[.gz] in {directory}; an MNIST directory holds "
                     "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte "
                     "and t10k-labels-idx1-ubyte (gzipped or not).")


def _check_dir(path: str, what: str) -> Path:
    p = Path(os.path.expanduser(path))
    if not path:
        raise InputError(f"{what} needs a directory: use '{what}:/path/to/dir'.")
    if p.exists() and not p.is_dir():
        raise InputError(f"{p} is a file, but {what}:PATH needs a directory holding the {what} "
                         f"files; pass the folder that contains it as '{what}:DIR'.")
    if not p.is_dir():
        raise InputError(f"{what} directory {p} does not exist; nothing is downloaded, so place "
                         f"the {what} files there first and pass '{what}:DIR'.")
    return p


def _raw_mnist(directory: Path) -> tuple[np.ndarray, ...]:
    xtr = read_idx(_find(directory, "train-images-idx3-ubyte"), 3)
    ytr = read_idx(_find(directory, "train-labels-idx1-ubyte"), 1)
    xte = read_idx(_find(directory, "t10k-images-idx3-ubyte"), 3)
    yte = read_idx(_find(directory, "t10k-labels-idx1-ubyte"), 1)
    if xtr.shape[0] != ytr.shape[0] or xte.shape[0] != yte.shape[0]:
        raise InputError(f"MNIST files in {directory} disagree on the number of images and labels.")
    return xtr / 255.0, ytr.astype(np.int64), xte / 255.0, yte.astype(np.int64)


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR-10 batch may name: what rebuilds a numpy array and its dtype."""
    reconstruct = np.zeros(0).__reduce__()[0]  # numpy(._core).multiarray._reconstruct
    frombuffer = np.zeros(0).__reduce_ex__(5)[0]  # numpy(._core).numeric._frombuffer
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        allowed[(core + ".multiarray", "_reconstruct")] = reconstruct
        allowed[(core + ".numeric", "_frombuffer")] = frombuffer
    return allowed


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only; any other global is refused unbuilt."""

    allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        """Return an allowed numpy global, or refuse before anything is called."""
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        raise _RefusedGlobal(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent references (no CIFAR-10 batch has any)."""
        raise _RefusedGlobal(f"persistent id {pid!r}")


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle named something a CIFAR-10 batch does not contain."""


def _read_cifar_batch(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch without running code from the file.

    The official batches are pickled dicts of plain values and numpy arrays. They are read with
    an unpickler that builds only dicts, lists, tuples, strings, bytes, numbers and ``uint8``
    numpy arrays; a file that names any other global (a class, a function such as ``os.system``)
    is refused before that object is built.

    Args:
      path: the batch file (``data_batch_1`` ... ``data_batch_5``, ``test_batch``).

    Returns:
      ``(images, labels)``: ``(N, 32, 32, 3)`` uint8 and ``(N,)`` int64.
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p} is a directory, but a CIFAR-10 python batch file was expected.")
    if not p.is_file():
        raise InputError(f"missing {p.name} in {p.parent}; a CIFAR-10 directory holds the python "
                         "batches data_batch_1 ... data_batch_5 and test_batch.")
    try:
        with open(p, "rb") as f:
            d = _BatchUnpickler(f, encoding="bytes").load()
    except _RefusedGlobal as e:
        raise InputError(f"{p} is not a CIFAR-10 python batch: its pickle asks for {e}, which a "
                         "batch never contains, so it was refused unloaded (loading it could run "
                         "code). Use the official 'python version' files.") from e
    except Exception as e:  # unpickling raises many kinds of errors on a damaged file
        raise InputError(f"{p} is not a readable CIFAR-10 python batch ({type(e).__name__}: "
                         f"{e}); expected the pickled dict of the 'python version'.") from e
    if not isinstance(d, dict):
        raise InputError(f"{p} holds a {type(d).__name__}, not the dict of a CIFAR-10 batch.")
    d = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}
    try:
        data, labels = d["data"], d["labels"]
    except KeyError as e:
        raise InputError(f"{p} has no b'{e.args[0]}' entry; is it a CIFAR-10 python batch?") from e
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8):
        raise InputError(f"{p}: 'data' is a {type(data).__name__} of "
                         f"{getattr(data, 'dtype', 'objects')}; a CIFAR-10 batch holds uint8 pixels.")
    try:
        y = np.asarray(labels)
    except (TypeError, ValueError) as e:
        raise InputError(f"{p}: 'labels' is not a list of class numbers ({e}).") from e
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"{p}: 'labels' must be a list of integer classes, got {y.dtype} of shape "
                         f"{y.shape}.")
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != y.size:
        raise InputError(f"{p}: data has shape {data.shape} and there are {y.size} labels; a "
                         "CIFAR-10 batch holds (N, 3072) bytes and N labels.")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y.astype(np.int64)


def _raw_cifar(directory: Path) -> tuple[np.ndarray, ...]:
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    parts = [_read_cifar_batch(directory / f"data_batch_{i}") for i in range(1, 6)]
    xte, yte = _read_cifar_batch(directory / "test_batch")
    return (np.concatenate([p[0] for p in parts]) / 255.0, np.concatenate([p[1] for p in parts]),
            xte / 255.0, yte)


def _raw_digits(seed: int) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = d.images / 16.0, d.target.astype(np.int64)
    rng = np.random.default_rng(10_000 + seed)
    # A fixed stratified 70/30 split into a training pool and a test pool.
    test = _stratified(y, int(round(0.3 * y.size)), rng)
    mask = np.ones(y.size, bool)
    mask[test] = False
    train = np.flatnonzero(mask)
    return x[train], y[train], x[test], y[test]


def _check_numbers(n_train: Any, n_test: Any, seed: Any, label_noise: Any,
                   center: Any) -> tuple[int | None, int | None, int, float, bool]:
    """Check the numeric arguments every loader shares, before anything is read."""
    n_train = check_whole(n_train, "n_train", allow_none=True)
    n_test = check_whole(n_test, "n_test", allow_none=True)
    seed = check_whole(seed, "seed", low=0)
    label_noise = check_fraction(label_noise, "label_noise")
    if not isinstance(center, (bool, np.bool_)):
        raise InputError(f"center must be True or False, got {center!r}.")
    return n_train, n_test, seed, label_noise, bool(center)


def load_dataset(spec: str = "digits", *, n_train: int | None = 200, n_test: int | None = 50,
                 seed: int = 0, classes: tuple[int, ...] | str | None = None,
                 label_noise: float = 0.0, center: bool = False) -> Dataset:
    """Load a dataset by spec, subsample it stratified by class, and unit-normalise it.

    Specs: ``digits`` (scikit-learn's 8x8 digits, shipped with the package), ``digits:3,8``
    (a class pair, labels +1/-1), ``mnist:DIR[:3,8]`` (IDX files, gzipped or not),
    ``cifar10:DIR[:3,5]`` (python pickle batches, read without running code) and
    ``npz:PATH[:3,8]`` (arrays ``x_train, y_train, x_test, y_test``; see
    :func:`dataset_from_arrays` for how their labels are read).
    Without a class list, all classes are used with one-hot labels.

    Args:
      spec: the data spec.
      n_train: training points (stratified subsample; None for all).
      n_test: test points (None for all).
      seed: subsampling and label-noise seed.
      classes: class list overriding the one in the spec.
      label_noise: fraction of training labels to flip (indices recorded in ``noisy_index``).
      center: subtract the training mean before normalising (improves conditioning; off by
        default to match the paper).

    Returns:
      :class:`Dataset`.
    """
    if not isinstance(spec, str) or not spec:
        raise InputError(f"data spec must be a non-empty string, got {spec!r}.")
    n_train, n_test, seed, label_noise, center = _check_numbers(n_train, n_test, seed,
                                                                label_noise, center)
    kind, _, rest = spec.partition(":")
    cls: tuple[int, ...] | None = None
    if kind in ("mnist", "cifar10", "npz"):
        m = re.match(r"^(.*):(-?\d+(?:,-?\d+)+)$", rest)
        if m:
            rest, cls = m.group(1), check_classes(m.group(2))
    elif kind == "digits" and rest:
        cls = check_classes(rest)
    if classes is not None:
        cls = check_classes(classes)
    if kind == "npz":
        arrs, path = _read_npz(rest)
        return dataset_from_arrays(arrs["x_train"], arrs["y_train"], arrs["x_test"],
                                   arrs["y_test"], n_train=n_train, n_test=n_test, seed=seed,
                                   classes=cls, label_noise=label_noise, center=center,
                                   name=spec, source=f"arrays from {path}")
    if kind == "digits":
        xtr, ytr, xte, yte = _raw_digits(seed)
        image_shape: tuple[int, ...] = (8, 8)
        source = "scikit-learn digits (8x8, /16)"
    elif kind == "mnist":
        xtr, ytr, xte, yte = _raw_mnist(_check_dir(rest, "mnist"))
        image_shape, source = (28, 28), f"MNIST IDX from {rest} (/255)"
    elif kind == "cifar10":
        xtr, ytr, xte, yte = _raw_cifar(_check_dir(rest, "cifar10"))
        image_shape, source = (32, 32, 3), f"CIFAR-10 batches from {rest} (/255)"
    else:
        raise InputError(f"unknown data spec {spec!r}; use digits, digits:3,8, mnist:DIR, "
                         "cifar10:DIR or npz:PATH.")
    return _from_classes(xtr, ytr, xte, yte, cls, n_train=n_train, n_test=n_test, seed=seed,
                         label_noise=label_noise, center=center, name=spec,
                         image_shape=image_shape, source=source, strict_n=True)


def _from_classes(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray,
                  cls: tuple[int, ...] | None, *, n_train: int | None, n_test: int | None,
                  seed: int, label_noise: float, center: bool, name: str,
                  image_shape: tuple[int, ...] | None, source: str, strict_n: bool) -> Dataset:
    """Select classes, subsample stratified, normalise and encode integer class labels."""
    all_cls = tuple(int(c) for c in np.unique(ytr))
    if cls is None and len(all_cls) < 2:
        raise InputError(f"{name}: the training labels hold only class {all_cls}; a task needs at "
                         "least two classes.")
    cls = check_classes(all_cls if cls is None else cls)
    missing = set(cls) - set(all_cls)
    if missing:
        raise InputError(f"classes {sorted(missing)} do not occur in {name}; available: {all_cls}.")
    rng = np.random.default_rng(seed)
    pool_tr = np.flatnonzero(np.isin(ytr, cls))
    pool_te = np.flatnonzero(np.isin(yte, cls))
    if pool_te.size == 0:
        raise InputError(f"{name}: no test point belongs to the classes {list(cls)}.")
    if not strict_n:
        n_train = None if n_train is None or n_train >= pool_tr.size else n_train
        n_test = None if n_test is None or n_test >= pool_te.size else n_test
    itr = pool_tr[_select(ytr[pool_tr], n_train, rng, keep_order=not strict_n)]
    ite = pool_te[_select(yte[pool_te], n_test, rng, keep_order=not strict_n)]
    x_train = xtr[itr].reshape(itr.size, -1).astype(np.float64)
    x_test = xte[ite].reshape(ite.size, -1).astype(np.float64)
    steps = [source]
    if pool_tr.size < ytr.size or pool_te.size < yte.size:
        steps.append(f"classes {list(cls)} kept ({ytr.size - pool_tr.size} train / "
                     f"{yte.size - pool_te.size} test points of other classes left out)")
    x_train, x_test = center_and_normalize(x_train, x_test, center, steps)
    y_train, y_test = encode(ytr[itr], cls), encode(yte[ite], cls)
    steps.append("labels +1/-1 (first class +1)" if len(cls) == 2 else "labels one-hot")
    noisy = np.zeros(0, np.int64)
    if label_noise:
        y_train, noisy = flip_labels(y_train, label_noise, seed)
        steps.append(f"{noisy.size} training labels flipped ({label_noise:.0%})")
    return Dataset(x_train, y_train, x_test, y_test, name, cls, image_shape, itr, ite, noisy,
                   "; ".join(steps), ytr[itr], yte[ite])


def _is_class_labels(y: np.ndarray) -> bool:
    """Integer class labels (not already +1/-1 targets)."""
    return (y.ndim == 1 and np.issubdtype(y.dtype, np.integer)
            and not set(np.unique(y).tolist()) <= {-1, 1})


def _strata(y: np.ndarray) -> np.ndarray:
    """Labels to stratify given targets by: the sign (scalar) or the argmax (several outputs)."""
    return np.sign(y) if y.ndim == 1 else np.argmax(y, axis=1)


def _check_image_shape(image_shape: Any, point: tuple[int, ...]) -> tuple[int, ...]:
    """Check an image shape is whole numbers whose product is the number of values per point."""
    try:
        dims = tuple(image_shape)
    except TypeError as e:
        raise InputError(f"image_shape must be a tuple of sizes like (28, 28), got "
                         f"{image_shape!r}.") from e
    dims = tuple(check_whole(v, "image_shape entries") for v in dims)
    size = int(np.prod(point))
    if not dims or int(np.prod(dims)) != size:
        raise InputError(f"image_shape {dims} holds {int(np.prod(dims))} values but each point has "
                         f"{size} (point shape {point}); pass a shape with that many values.")
    return dims


def dataset_from_arrays(x_train: Any, y_train: Any, x_test: Any, y_test: Any, *,
                        n_train: int | None = None, n_test: int | None = None, seed: int = 0,
                        classes: tuple[int, ...] | None = None, label_noise: float = 0.0,
                        center: bool = False, name: str = "arrays",
                        image_shape: tuple[int, ...] | None = None,
                        source: str = "arrays passed in") -> Dataset:
    """Build a :class:`Dataset` from arrays: the same preprocessing as the file formats.

    Labels are read in one of two ways. Integer class labels (a 1-D integer array other than
    +1/-1) are encoded like the image datasets: +1/-1 for two classes (the first of ``classes``
    is +1), one-hot for more; ``classes`` selects a subset. Anything else (+1/-1, real targets
    with ``|y| <= 1``, one-hot rows) is used as given, and ``classes`` must be None. Inputs are
    flattened and scaled to unit norm. ``n_train``/``n_test`` subsample stratified by class (by
    sign or argmax for given targets); a size at or above the number available keeps all points.

    Args:
      x_train: ``(n, ...)`` training inputs (images keep their shape for figures).
      y_train: ``(n,)`` or ``(n, k)`` training labels.
      x_test: ``(t, ...)`` test inputs, of the same point shape.
      y_test: ``(t,)`` or ``(t, k)`` test labels.
      n_train: training points to keep (None for all).
      n_test: test points to keep (None for all).
      seed: subsampling and label-noise seed.
      classes: class labels to keep (integer labels only).
      label_noise: fraction of training labels to flip (``noisy_index`` records which).
      center: subtract the training mean before normalising.
      name: the name recorded in the dataset.
      image_shape: shape of one point as an image (default: the point shape if not flat).
      source: description of where the arrays came from, for ``preprocessing``.

    Returns:
      :class:`Dataset`.
    """
    n_train, n_test, seed, label_noise, center = _check_numbers(n_train, n_test, seed,
                                                                label_noise, center)
    for nm, v in (("name", name), ("source", source)):
        if not isinstance(v, str):
            raise InputError(f"{nm} must be a string, got {v!r}.")
    xtr = as_array(x_train, "x_train", (2, 3, 4))
    xte = as_array(x_test, "x_test", (2, 3, 4))
    if xte.shape[1:] != xtr.shape[1:]:
        raise InputError(f"x_test has point shape {xte.shape[1:]} but x_train has {xtr.shape[1:]}.")
    classes = None if classes is None else check_classes(classes)
    if image_shape is None and xtr.ndim > 2:
        image_shape = tuple(xtr.shape[1:])
    elif image_shape is not None:
        image_shape = _check_image_shape(image_shape, xtr.shape[1:])
    raw_ytr, raw_yte = np.asarray(y_train), np.asarray(y_test)
    for nm, yy, xx in (("y_train", raw_ytr, xtr), ("y_test", raw_yte, xte)):
        if yy.ndim not in (1, 2) or yy.shape[0] != xx.shape[0]:
            raise InputError(f"{nm} has shape {yy.shape} but there are {xx.shape[0]} points; give "
                             "one label (or one one-hot row) per point.")
        as_array(yy, nm, (1, 2))  # real, finite numbers
    if _is_class_labels(raw_ytr) or (classes is not None and raw_ytr.ndim == 1):
        for nm, yy in (("y_train", raw_ytr), ("y_test", raw_yte)):
            yf = as_array(yy, nm, (1,))
            if not np.all(yf == np.round(yf)):
                bad = yf[np.flatnonzero(yf != np.round(yf))[0]]
                raise InputError(
                    f"{nm} holds the non-integer value {bad:g}, but y_train is read as integer "
                    "class labels (an integer array other than +1/-1, or classes given); pass "
                    "class labels in both, or real-valued targets (floats) in both.")
        ytr_i = as_array(raw_ytr, "y_train", (1,)).astype(np.int64)
        yte_i = as_array(raw_yte, "y_test", (1,)).astype(np.int64)
        if classes is None:
            unseen = sorted(set(np.unique(yte_i).tolist()) - set(np.unique(ytr_i).tolist()))
            if unseen:
                raise InputError(f"y_test holds class(es) {unseen} that no training point has; "
                                 "drop those test points, or pass classes=... to keep a subset.")
        return _from_classes(xtr, ytr_i, xte, yte_i, classes, n_train=n_train, n_test=n_test,
                             seed=seed, label_noise=label_noise, center=center, name=name,
                             image_shape=image_shape, source=source, strict_n=False)
    if classes is not None:
        raise InputError("classes can only select among integer class labels; y_train holds "
                         "targets that are used as given.")
    ytr = as_array(raw_ytr, "y_train", (1, 2))
    yte = as_array(raw_yte, "y_test", (1, 2))
    if ytr.shape[1:] != yte.shape[1:]:
        raise InputError(f"y_train rows have shape {ytr.shape[1:]} but y_test rows {yte.shape[1:]}.")
    rng = np.random.default_rng(seed)
    ntr = None if n_train is None or n_train >= ytr.shape[0] else n_train
    nte = None if n_test is None or n_test >= yte.shape[0] else n_test
    itr = _select(_strata(ytr), ntr, rng, keep_order=True)
    ite = _select(_strata(yte), nte, rng, keep_order=True)
    x_tr = xtr[itr].reshape(itr.size, -1)
    x_te = xte[ite].reshape(ite.size, -1)
    steps = [source]
    if ntr is not None or nte is not None:
        steps.append(f"subsampled to {itr.size} train / {ite.size} test")
    x_tr, x_te = center_and_normalize(x_tr, x_te, center, steps)
    steps.append("labels as given")
    y_tr, y_te = ytr[itr], yte[ite]
    noisy = np.zeros(0, np.int64)
    if label_noise:
        y_tr, noisy = flip_labels(y_tr, label_noise, seed)
        steps.append(f"{noisy.size} training labels flipped ({label_noise:.0%})")
    return Dataset(x_tr, y_tr, x_te, y_te, name, (), image_shape, itr, ite, noisy,
                   "; ".join(steps))


_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read_npz(path: str) -> tuple[dict[str, np.ndarray], Path]:
    p = Path(os.path.expanduser(path))
    if path and p.is_dir():
        raise InputError(f"{p} is a directory, but npz:PATH needs a .npz file with arrays "
                         "x_train, y_train, x_test, y_test.")
    if not path or not p.is_file():
        raise InputError(f"npz file {p} not found; pass npz:PATH to a file with arrays "
                         "x_train, y_train, x_test, y_test.")
    if not zipfile.is_zipfile(p):
        raise InputError(f"{p} is not an .npz file (an .npz is a zip archive of .npy arrays, as "
                         "np.savez writes); save x_train, y_train, x_test, y_test with np.savez.")
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in _NPZ_KEYS if k not in z.files]
            if missing:
                raise InputError(f"{p} lacks array(s) {missing}; it must hold x_train, y_train, "
                                 f"x_test, y_test (found {z.files}).")
            out = {}
            for k in _NPZ_KEYS:
                try:
                    out[k] = z[k]
                except MemoryError as e:
                    raise InputError(f"{p}: array {k} is too large to load into memory ({e}); "
                                     "subsample the data before saving it.") from e
            return out, p
    except InputError:
        raise
    except Exception as e:  # zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error...
        raise InputError(f"{p} is not a readable .npz file ({type(e).__name__}: {e}); expected "
                         "np.savez output with x_train, y_train, x_test, y_test.") from e
