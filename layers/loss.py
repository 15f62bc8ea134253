"""Loss layers: ``forward(prediction, target) -> scalar``, ``backward(dloss=1.0) -> dprediction``."""
from __future__ import annotations

from .base import Module, saved


class SoftmaxCrossEntropy(Module):
    """Softmax + negative log-likelihood, mean over the batch (``torch.nn.CrossEntropyLoss``).

    Shapes
    ------
    logits : (N, C) float; targets : (N,) int class indices -> loss : scalar
    """

    def __init__(self, *, backend="numpy"):
        super().__init__(backend)
        self._probs = self._targets = None

    def forward(self, logits, targets):
        loss, self._probs = self.kernel("softmax_cross_entropy_forward")(logits, targets)
        self._targets = targets
        return loss

    def backward(self, dloss=1.0):
        probs = saved(self, "_probs")
        return self.kernel("softmax_cross_entropy_backward")(probs, self._targets, dloss)


class MSELoss(Module):
    """Mean squared error, mean over all elements (``torch.nn.MSELoss``).

    Shapes
    ------
    pred, target : any shape, equal -> loss : scalar
    """

    def __init__(self, *, backend="numpy"):
        super().__init__(backend)
        self._pred = self._target = None

    def forward(self, pred, target):
        loss = self.kernel("mse_forward")(pred, target)
        self._pred, self._target = pred, target
        return loss

    def backward(self, dloss=1.0):
        return self.kernel("mse_backward")(saved(self, "_pred"), self._target, dloss)
