"""Embedding lookup table (``torch.nn.Embedding``)."""
from __future__ import annotations

import numpy as np

from kernels._checks import array_module
from .base import Module, Parameter, make_rng, saved

__all__ = ["Embedding"]


class Embedding(Module):
    """A table of ``num_embeddings`` vectors of size ``embedding_dim``; ``forward(ids)`` returns
    the rows ``weight[ids]``.

    ``backward(dout)`` scatter-adds ``dout`` into ``weight.grad`` (a repeated id sums its
    gradients) and returns None: integer ids have no gradient. The ``padding_idx`` row is
    initialised to zero and never receives a gradient (it stays fixed under any optimiser
    without weight decay), as in PyTorch.

    Parameters
    ----------
    num_embeddings : int
        V, the vocabulary size.
    embedding_dim : int
        D.
    padding_idx : int, optional
        in ``[-V, V)``; a negative index counts from the end, like torch.
    dtype : numpy dtype
        float32 or float64.
    seed : int or Generator, optional
        PyTorch's init: ``weight ~ N(0, 1)``.
    backend : str

    Shapes
    ------
    ids : any shape, integer, values in [0, V) -> out : (*ids.shape, D); weight : (V, D)
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, *, dtype=np.float32,
                 seed=None, backend="numpy"):
        super().__init__(backend)
        for name, v in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        V, D = self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)) \
                    or not -V <= padding_idx < V:
                raise ValueError(f"padding_idx: expected None or an int in [{-V}, {V - 1}] "
                                 f"(num_embeddings={V}), got {padding_idx!r}")
            padding_idx = int(padding_idx) % V
        self.padding_idx = padding_idx
        weight = make_rng(seed).standard_normal((V, D)).astype(dtype)
        if padding_idx is not None:
            weight[padding_idx] = 0
        self.weight = Parameter(weight)
        self._ids = None

    def forward(self, ids):
        """Look up ``ids``; returns ``(*ids.shape, D)``.

        Raises
        ------
        TypeError
            ``ids`` is not an integer array.
        ValueError
            an id is outside ``[0, num_embeddings - 1]`` (the message gives the range and the
            offending min/max).
        """
        if not hasattr(ids, "dtype"):
            ids = array_module(self.weight.data).asarray(ids)
        out = self.kernel("embedding_forward")(self.weight.data, ids)
        self._ids = ids
        return out

    def backward(self, dout):
        """Accumulate ``weight.grad``; return None (no gradient for integer ids)."""
        ids = saved(self, "_ids")
        self.kernel("embedding_backward")(self.weight.grad, dout, ids, self.padding_idx)
        return None

    def extra_repr(self):
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}, backend={self.backend!r}"
