"""Sequential container."""
from __future__ import annotations

from .base import Module


class Sequential(Module):
    """Run modules in order; ``backward`` runs them in reverse.

    Sub-modules are named ``"0"``, ``"1"``, ... so parameter names match
    ``torch.nn.Sequential`` (``0.weight``, ``3.bias``, ...).
    """

    def __init__(self, *modules: Module):
        super().__init__(modules[0].backend if modules else "numpy")
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"modules[{i}]: expected a layers.Module, got {type(m).__name__}")
            setattr(self, str(i), m)

    @property
    def backends(self) -> set:
        """The backends of the sub-modules (one after :meth:`Module.to`)."""
        return {m.backend for m in self._modules.values()}

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x):
        for m in self._modules.values():
            x = m.forward(x)
        return x

    def backward(self, dout):
        for m in reversed(self._modules.values()):
            dout = m.backward(dout)
        return dout
