"""seqgrid layers: stateful modules with explicit forward/backward on the kernels."""
from .base import Module, Parameter

__all__ = ["Module", "Parameter"]
