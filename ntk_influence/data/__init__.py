"""TODO."""

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
