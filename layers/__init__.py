"""seqgrid layers: stateful modules with explicit forward/backward on the kernels.

Every layer takes ``backend=`` (``"numpy"``, ``"numba"``, ...) and calls kernels
only through :mod:`kernels.registry`. ``backward`` returns the input gradient
and accumulates parameter gradients (``zero_grad`` between steps).
"""
from .base import Module, Parameter
from .activation import ReLU, Sigmoid, Tanh
from .container import Sequential
from .conv import Conv1d, Conv2d
from .dense import Flatten, Linear
from .loss import MSELoss, SoftmaxCrossEntropy
from .pool import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d

__all__ = [
    "Module", "Parameter",
    "Conv2d", "Conv1d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    "Linear", "Flatten", "ReLU", "Sigmoid", "Tanh", "Sequential",
    "SoftmaxCrossEntropy", "MSELoss",
]
from .recurrent import GRU, LSTM, RNN, JordanRNN  # noqa: E402
from .clip import clip_grad_norm_, clip_grad_value_  # noqa: E402

__all__ += ["RNN", "LSTM", "GRU", "JordanRNN", "clip_grad_norm_", "clip_grad_value_"]
