"""Datasets: loading, unit normalisation, label encoding and label noise.

- ``_loaders``: :func:`load_dataset` (embedded digits, MNIST, CIFAR-10 and ``.npz`` files by a
  data spec; nothing is downloaded) and :func:`dataset_from_arrays`;
- ``_dataset``: the :class:`Dataset` container, :func:`unit_normalize` and :func:`flip_labels`;
- from the package's validation: :func:`ensure_unit_norm` (rescale rows within a tolerance of
  unit norm, refuse others) and its :class:`UnitNormReport`.
"""

from .._validate import UnitNormReport, ensure_unit_norm
from ._dataset import Dataset, flip_labels, unit_normalize
from ._loaders import dataset_from_arrays, load_dataset

__all__ = [
    "Dataset",
    "UnitNormReport",
    "dataset_from_arrays",
    "ensure_unit_norm",
    "flip_labels",
    "load_dataset",
    "unit_normalize",
]
