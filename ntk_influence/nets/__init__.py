"""Finite-width Flax NNX networks, their empirical NTK and their Gauss-Newton steps.

- :mod:`._functional`: the model protocol (:class:`ModelProtocol` and one ``typing.Protocol``
  per optional hook, e.g. :class:`GaussNewtonStepHook`, :class:`EntkGramHook`), and
  :class:`FunctionalNet` / :func:`functional`, a model split into a pure function of a flat
  parameter vector that owns its compiled programs.
- :mod:`._two_layer`: the paper's two-layer ReLU net of eq. (1) (:class:`TwoLayerReLU`,
  :func:`two_layer_net`, :func:`initial_output`) with its structured step and closed forms.
- :mod:`._deep`: deep MLPs and conv nets (:class:`DeepReLU`) with layer-tap eNTK and step.
- :mod:`._activations`: their activations (ReLU, erf, GELU), closed-form derivatives and NT layers.
- :mod:`._architecture`: the builders :func:`mlp`, :func:`cnn` and the families
  (:class:`Architecture`, :func:`architecture`) that ``--arch`` names (``mlp:L[:ACT]``, ...).
- :mod:`._budget`: the parameter-memory check every net builder runs before allocating.
- :mod:`._empirical`: the empirical NTK (:func:`entk`, :func:`entk_jacobian`,
  :func:`entk_structured`, :func:`entk_two_layer`, :func:`relative_frobenius_error`).
- :mod:`._grams`: the traceable eNTK :func:`ntk_gram` and the pattern Gram of eq. (1).
- :mod:`._steps`: the Gauss-Newton step interface (:class:`Problem`, :class:`GNStep`,
  :class:`Linearization`, :func:`linearized_step`, :func:`autodiff_step`) and the one copy of
  eq. (2)'s objective (:func:`regularised_loss`), of the Woodbury solve
  (:func:`woodbury_core`) and of conjugate gradients (:func:`cg_solve`).
"""

from ._architecture import READOUTS, Architecture, architecture, cnn, mlp
from ._deep import DeepReLU
from ._empirical import entk, entk_jacobian, entk_structured, entk_two_layer, relative_frobenius_error
from ._functional import (
    DescribeHook,
    EntkGramHook,
    ExactGaussNewtonHook,
    FlatApplyHook,
    FunctionalNet,
    GaussNewtonStepHook,
    JacobianChunkHook,
    JacobianColumnsHook,
    KindHook,
    ModelProtocol,
    ReseededHook,
    RetrainBytesHook,
    WidthHook,
    functional,
)
from ._grams import ntk_gram
from ._steps import (
    Direction,
    GNStep,
    Linearization,
    Problem,
    Start,
    autodiff_step,
    cg_solve,
    linearized_step,
    regularised_loss,
    woodbury_core,
)
from ._two_layer import TwoLayerReLU, initial_output, two_layer_net

__all__ = [
    "READOUTS",
    "Architecture",
    "DeepReLU",
    "DescribeHook",
    "Direction",
    "EntkGramHook",
    "ExactGaussNewtonHook",
    "FlatApplyHook",
    "FunctionalNet",
    "GNStep",
    "GaussNewtonStepHook",
    "JacobianChunkHook",
    "JacobianColumnsHook",
    "KindHook",
    "Linearization",
    "ModelProtocol",
    "Problem",
    "ReseededHook",
    "RetrainBytesHook",
    "Start",
    "TwoLayerReLU",
    "WidthHook",
    "architecture",
    "autodiff_step",
    "cg_solve",
    "cnn",
    "entk",
    "entk_jacobian",
    "entk_structured",
    "entk_two_layer",
    "functional",
    "initial_output",
    "linearized_step",
    "mlp",
    "ntk_gram",
    "regularised_loss",
    "relative_frobenius_error",
    "two_layer_net",
    "woodbury_core",
]
