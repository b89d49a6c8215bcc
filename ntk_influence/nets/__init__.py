"""TODO."""

from ._architecture import Architecture, architecture, cnn, mlp
from ._deep import DeepReLU
from ._empirical import entk, entk_jacobian, entk_structured, entk_two_layer, relative_frobenius_error
from ._functional import FunctionalNet, functional
from ._grams import ntk_gram
from ._steps import Problem, autodiff_step, regularised_loss, woodbury_core
from ._two_layer import TwoLayerReLU, initial_output, two_layer_net

__all__ = [
    "Architecture",
    "DeepReLU",
    "FunctionalNet",
    "Problem",
    "TwoLayerReLU",
    "architecture",
    "autodiff_step",
    "cnn",
    "entk",
    "entk_jacobian",
    "entk_structured",
    "entk_two_layer",
    "functional",
    "initial_output",
    "mlp",
    "ntk_gram",
    "regularised_loss",
    "relative_frobenius_error",
    "two_layer_net",
    "woodbury_core",
]
