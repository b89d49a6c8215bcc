"""Datasets: loading, unit normalisation, label encoding and label noise.

- ``_loaders``: :func:`load_dataset` (embedded digits, MNIST, CIFAR-10 and ``.npz`` files by a
  data spec; nothing is downloaded) and :func:`dataset_from_arrays`;
- ``_idx``: the IDX reader behind ``mnist:DIR``, which checks the header against the file
  before it allocates or decompresses anything;
- ``_dataset``: the :class:`Dataset` container, :func:`unit_normalize`, :func:`flip_labels` and
  :func:`check_fraction` (a share of the points in ``[0, 1)``);
- from the package's validation: :func:`ensure_unit_norm` (rescale rows within a tolerance of
  unit norm, refuse others) and its :class:`UnitNormReport`.
"""

from .._validate import UnitNormReport, ensure_unit_norm
from ._dataset import Dataset, check_fraction, flip_labels, unit_normalize
from ._loaders import dataset_from_arrays, load_dataset

__all__ = [
    "Dataset",
    "UnitNormReport",
    "check_fraction",
    "dataset_from_arrays",
    "ensure_unit_norm",
    "flip_labels",
    "load_dataset",
    "unit_normalize",
]
