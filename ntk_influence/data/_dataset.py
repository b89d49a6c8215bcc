"""The :class:`Dataset` container and the preprocessing every loader shares.

This module holds :class:`Dataset` (a train/test split with its provenance: class labels,
indices, flipped labels, preprocessing), :func:`unit_normalize` (every point scaled to unit
Euclidean norm, as the paper assumes ``||x|| = 1``), the label encoding (``+1/-1`` for a pair
of classes, one-hot for several, so ``|y| <= 1``) and :func:`flip_labels` (label noise). The
loaders that fill a :class:`Dataset` from files and arrays are in :mod:`._loaders`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._validate import as_array, check_whole, ensure_unit_norm
from ..errors import InputError


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A train/test split ready for the kernels.

    Attributes:
      x_train: ``(n_train, d)`` unit-norm inputs.
      y_train: ``(n_train,)`` labels in {+1, -1}, or ``(n_train, k)`` one-hot.
      x_test: ``(n_test, d)`` unit-norm inputs.
      y_test: ``(n_test,)`` or ``(n_test, k)`` labels.
      name: the data spec it came from.
      classes: the original class labels used (``classes[0]`` is ``+1`` in binary tasks).
      image_shape: shape of one input as an image (for figures), or None.
      train_index: indices of the training points in the source's training pool.
      test_index: indices of the test points in the source's test pool.
      noisy_index: indices (into the training set) whose labels were flipped; empty if none.
      preprocessing: what was done to the raw data.
      class_train: original class of each training point (before any label noise).
      class_test: original class of each test point.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    classes: tuple[int, ...] = ()
    image_shape: tuple[int, ...] | None = None
    train_index: np.ndarray | None = None
    test_index: np.ndarray | None = None
    noisy_index: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    preprocessing: str = ""
    class_train: np.ndarray | None = None
    class_test: np.ndarray | None = None

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description of the dataset.

        Returns:
          Name, sizes, dimension, classes, outputs, image shape, label noise and preprocessing.
        """
        return {
            "name": self.name, "n_train": int(self.x_train.shape[0]),
            "n_test": int(self.x_test.shape[0]), "d": int(self.x_train.shape[1]),
            "classes": [int(c) for c in self.classes],
            "outputs": 1 if self.y_train.ndim == 1 else int(self.y_train.shape[1]),
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "n_noisy": int(self.noisy_index.size), "preprocessing": self.preprocessing,
        }


def unit_normalize(x: Any, name: str = "x") -> np.ndarray:
    """Scale every row (point) of ``x`` to unit Euclidean norm.

    Each row is divided by its largest absolute entry before its norm is taken, so rows of any
    finite scale (``1e200`` or ``1e-160``) come out with norms within ``1e-12`` of 1 (verified).

    Args:
      x: ``(n, ...)`` array; each point is flattened for the norm.
      name: the argument's name, used in messages (e.g. ``"x_train"``).

    Returns:
      Float64 array of the same shape with ``||x_i|| = 1`` (all-zero rows raise); see
      :func:`ensure_unit_norm` for the record of what was rescaled.
    """
    return ensure_unit_norm(x, name, normalize=True)[0]


def center_and_normalize(x_tr: np.ndarray, x_te: np.ndarray, center: bool,
                         steps: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Optionally centre on the training mean, then scale every point to unit norm.

    Appends what was done to ``steps``.
    """
    hint = ""
    if center:
        mu = x_tr.mean(axis=0)
        x_tr, x_te = x_tr - mu, x_te - mu
        steps.append("centred on the training mean")
        hint = " after centring on the training mean (the point equals the mean; try center=False)"
    steps.append("flattened and scaled to unit norm")
    return (ensure_unit_norm(x_tr, "x_train", normalize=True, zero_hint=hint)[0],
            ensure_unit_norm(x_te, "x_test", normalize=True, zero_hint=hint)[0])


def check_fraction(fraction: Any, name: str = "label_noise") -> float:
    """A share of the points in ``[0, 1)`` (label noise), refusing bools, strings and NaN.

    Args:
      fraction: the value.
      name: the argument's name, used in the message.

    Returns:
      ``float(fraction)``.
    """
    if isinstance(fraction, (bool, np.bool_)) or not isinstance(fraction, (int, float, np.integer,
                                                                           np.floating)):
        raise InputError(f"{name} must be a number in [0, 1) (the share of training labels to "
                         f"flip), got {fraction!r}.")
    f = float(fraction)
    if not 0.0 <= f < 1.0:
        raise InputError(f"{name} must be in [0, 1) (the share of training labels to flip), "
                         f"got {fraction!r}; e.g. {name}=0.1 flips 10%.")
    return f


def encode(labels: np.ndarray, classes: tuple[int, ...]) -> np.ndarray:
    """Integer class labels as ``+1/-1`` (two classes, ``classes[0]`` is +1) or one-hot rows."""
    if len(classes) == 2:
        return np.where(labels == classes[0], 1.0, -1.0)
    onehot = np.zeros((labels.size, len(classes)))
    onehot[np.arange(labels.size), np.searchsorted(np.asarray(classes), labels)] = 1.0
    return onehot


def flip_labels(y: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Flip a fraction of labels: ``y -> -y`` for binary, another random class for one-hot.

    Args:
      y: ``(n,)`` +1/-1 labels or ``(n, k)`` one-hot labels.
      fraction: share of labels to flip, in ``[0, 1)``.
      seed: random seed.

    Returns:
      ``(y_noisy, flipped_indices)``.
    """
    fraction = check_fraction(fraction, "fraction")
    seed = check_whole(seed, "seed", low=0)
    y = as_array(y, "y", (1, 2))
    rng = np.random.default_rng(seed)
    n = y.shape[0]
    idx = np.sort(rng.choice(n, int(round(fraction * n)), replace=False))
    out = np.array(y, dtype=float, copy=True)
    if y.ndim == 1:
        out[idx] = -out[idx]
    else:
        k = y.shape[1]
        for i in idx:
            old = int(np.argmax(out[i]))
            new = (old + rng.integers(1, k)) % k
            out[i] = 0.0
            out[i, new] = 1.0
    return out, idx
