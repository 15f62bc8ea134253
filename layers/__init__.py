"""seqgrid layers: stateful modules with explicit forward/backward on the kernels.

Every layer takes ``backend=`` (``"numpy"``, ``"numba"``, ``"cuda"``, ``"cuda-emu"``) and
calls kernels only through :mod:`kernels.registry`. ``backward`` returns the input gradient
and accumulates parameter gradients (``zero_grad`` between steps). ``model.to("cuda")`` moves
a model to the GPU; :mod:`layers.optim` updates parameters; :func:`save` / :func:`load` write
and read PyTorch-named ``.npz`` state dicts.
"""
from . import optim, serialization
from .activation import ReLU, Sigmoid, Tanh
from .base import Module, Parameter
from .clip import clip_grad_norm_, clip_grad_value_
from .container import Sequential
from .conv import Conv1d, Conv2d
from .dense import Flatten, Linear
from .dropout import Dropout
from .embedding import Embedding
from .loss import MSELoss, SoftmaxCrossEntropy
from .norm import BatchNorm1d, BatchNorm2d
from .optim import SGD, Adam, AdamW, ConstantLR, ExponentialLR, MultiStepLR, StepLR
from .pool import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from .recurrent import GRU, LSTM, RNN, JordanRNN
from .serialization import load, load_state_dict_file, save

__all__ = [
    "Module", "Parameter",
    "Conv2d", "Conv1d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    "Linear", "Flatten", "ReLU", "Sigmoid", "Tanh", "Sequential", "Dropout", "Embedding",
    "BatchNorm1d", "BatchNorm2d", "SoftmaxCrossEntropy", "MSELoss",
    "RNN", "LSTM", "GRU", "JordanRNN", "clip_grad_norm_", "clip_grad_value_",
    "optim", "SGD", "Adam", "AdamW", "ConstantLR", "StepLR", "MultiStepLR", "ExponentialLR",
    "serialization", "save", "load", "load_state_dict_file",
]
