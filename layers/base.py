"""The small base every seqgrid layer builds on: :class:`Parameter` and :class:`Module`.

Layers are explicit, not autograd: ``forward`` saves what ``backward`` needs,
``backward(dout)`` returns the input gradient and *accumulates* parameter
gradients into ``param.grad`` (call :meth:`Module.zero_grad` between steps,
as in PyTorch). Parameter names, ``state_dict`` keys and initialisation follow
PyTorch, so weights move between seqgrid and ``torch.nn`` unchanged.

Devices: a module's ``backend`` decides where its arrays live. ``"cuda"`` keeps parameters,
gradients, inputs and outputs as CuPy arrays in GPU memory; every other backend (``numpy``,
``numba``, and ``cuda-emu``, which runs the CUDA C kernels on the CPU) uses NumPy arrays.
:meth:`Module.to` moves a whole model: ``model.to("cuda")`` / ``model.to("cpu")``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import numpy as np

from kernels import registry
from kernels._checks import array_module
from kernels.cuda.common import device_xp


class Parameter:
    """A trainable array and its gradient.

    Attributes
    ----------
    data : ndarray
        the value (float32 by default).
    grad : ndarray
        same shape and dtype as ``data``; accumulated by ``backward``.
    """

    __slots__ = ("data", "grad")

    def __init__(self, data):
        self.data = data
        self.grad = array_module(data).zeros_like(data)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def zero_grad(self) -> None:
        self.grad[...] = 0

    def __repr__(self) -> str:
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype})"


class Module:
    """Base class: registers parameters and sub-modules assigned as attributes.

    Parameters
    ----------
    backend : str
        kernel backend used by this module (``"numpy"``, ``"numba"``, ...).
    """

    def __init__(self, backend: str = "numpy"):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "backend", registry.check_backend(backend))

    # -- registration ---------------------------------------------------------
    def __setattr__(self, name, value):
        params = self.__dict__.get("_parameters")
        if params is None:
            raise AttributeError("call Module.__init__() before assigning attributes")
        if isinstance(value, Parameter):
            params[name] = value
            self._modules.pop(name, None)
        elif isinstance(value, Module):
            self._modules[name] = value
            params.pop(name, None)
        elif value is None and name in params:
            params[name] = None      # e.g. bias=False keeps the name, like torch
        object.__setattr__(self, name, value)

    # -- devices ----------------------------------------------------------------
    @property
    def device(self) -> str:
        """``"cuda"`` when this module's arrays live in GPU memory, else ``"cpu"``."""
        return "cuda" if self.backend == "cuda" else "cpu"

    @property
    def xp(self):
        """The array module of this module's arrays (``cupy`` on ``"cuda"``, else NumPy)."""
        return device_xp(self.backend)

    def to(self, device: str) -> "Module":
        """Move every parameter, gradient and buffer of this module and its sub-modules, and
        switch their kernels to a backend on that device (like ``torch.nn.Module.to``).

        Parameters
        ----------
        device : str
            ``"cuda"`` (CuPy arrays, ``cuda`` kernels), ``"cpu"`` (NumPy arrays, back to the
            CPU backend the module had before it went to the GPU, ``"numba"`` if it never had
            one), or any backend name (``"numpy"``, ``"numba"``, ``"cuda-emu"``, ``"cuda"``).

        Returns
        -------
        Module
            ``self``, for chaining. Outputs of later calls stay on the new device: pass inputs
            that live there (``cupy.asarray(x)`` for ``"cuda"``).

        Raises
        ------
        ValueError
            ``device`` is neither ``"cpu"`` nor ``"cuda"`` nor a backend name.
        BackendUnavailableError
            the target backend cannot run here (for ``"cuda"``: no CuPy, driver or device; the
            message says how to install CuPy).
        """
        if device not in ("cpu",) + registry.BACKENDS:
            raise ValueError(f"device: expected 'cpu', 'cuda' or a backend name "
                             f"{list(registry.BACKENDS)}, got {device!r}")
        for _, mod in self.named_modules():
            target = device
            if device == "cpu":
                target = mod.backend if mod.backend != "cuda" else mod.__dict__.get(
                    "_cpu_backend", "numba")
            registry.check_backend(target)
            if mod.backend != "cuda":
                object.__setattr__(mod, "_cpu_backend", mod.backend)
            move = _mover(target)
            for p in mod._parameters.values():
                if p is not None:
                    p.data, p.grad = move(p.data), move(p.grad)
            mod._move_buffers(move)
            object.__setattr__(mod, "backend", target)
        return self

    def _move_buffers(self, move) -> None:
        """Hook for modules with non-parameter arrays (e.g. running statistics): replace each
        with ``move(array)``. The default has none."""

    def kernel(self, op: str, version: int | None = None):
        """The registry kernel ``op`` for this module's backend."""
        return registry.get(op, self.backend, version)

    # -- traversal ------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, mod in self._modules.items():
            yield from mod.named_modules(f"{prefix}.{name}" if prefix else name)

    def children(self) -> Iterator["Module"]:
        return iter(self._modules.values())

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """``(name, Parameter)`` pairs with PyTorch-style dotted names (``0.weight``)."""
        for mod_name, mod in self.named_modules(prefix):
            for name, p in mod._parameters.items():
                if p is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    # -- modes ----------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        for _, mod in self.named_modules():
            object.__setattr__(mod, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    # -- state ----------------------------------------------------------------
    def _buffers(self) -> dict:
        """Non-trainable state saved in ``state_dict`` (e.g. running statistics)."""
        return {}

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of all parameters and buffers, keyed by PyTorch's names."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        for mod_name, mod in self.named_modules():
            pre = f"{mod_name}." if mod_name else ""
            for name, p in mod._parameters.items():
                if p is not None:
                    out[pre + name] = _to_host(p.data).copy()
            for name, b in mod._buffers().items():
                out[pre + name] = _to_host(b).copy()
        return out

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays from ``state`` into this module's parameters (in place).

        Raises
        ------
        KeyError
            a key is missing or unexpected (``strict=True``); the message names it.
        ValueError
            an array's shape differs; the message names the key and both shapes.
        """
        own = dict(self.named_parameters())
        buffers = {}
        for mod_name, mod in self.named_modules():
            pre = f"{mod_name}." if mod_name else ""
            for name in mod._buffers():
                buffers[pre + name] = (mod, name)
        if strict:
            missing = [k for k in list(own) + list(buffers) if k not in state]
            unexpected = [k for k in state if k not in own and k not in buffers]
            if missing or unexpected:
                raise KeyError(f"state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for key, value in state.items():
            arr = np.asarray(_to_host(value))
            if key in own:
                p = own[key]
                if tuple(arr.shape) != tuple(p.data.shape):
                    raise ValueError(f"state_dict[{key!r}]: expected shape {tuple(p.data.shape)}, "
                                     f"got {tuple(arr.shape)}")
                xp = array_module(p.data)
                p.data[...] = xp.asarray(arr.astype(p.data.dtype, copy=False))
            elif key in buffers:
                mod, name = buffers[key]
                mod._load_buffer(name, arr)

    def _load_buffer(self, name: str, value: np.ndarray) -> None:
        raise KeyError(f"state_dict: {type(self).__name__} has no buffer {name!r}")

    # -- calling --------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def backward(self, *args, **kwargs):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, mod in self._modules.items():
            sub = repr(mod).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return lines[0] + (")" if len(lines) == 1 else "\n" + "\n".join(lines[1:]) + "\n)")


def _mover(backend: str):
    """``array -> array`` in ``backend``'s memory (no copy when it already lives there)."""
    if backend == "cuda":
        import cupy

        def to_device(a):
            try:
                return cupy.asarray(a, order="C")   # keeps 0-d buffers 0-d
            except MemoryError as exc:
                raise registry.DeviceOutOfMemoryError("Module.to('cuda')", exc) from exc
        return to_device
    return lambda a: np.asarray(_to_host(a), order="C")


def _to_host(a):
    """NumPy view/copy of ``a`` whether it lives on the host or a GPU."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return a


def uniform_init(rng: np.random.Generator, shape, bound: float, dtype) -> np.ndarray:
    """``U(-bound, bound)``, PyTorch's default for Linear/Conv bias and RNN weights."""
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def make_rng(seed) -> np.random.Generator:
    """A Generator from ``seed`` (int, Generator or None)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def saved(module: Module, attr: str):
    """Fetch state saved by ``forward``; a clear error if ``backward`` came first."""
    value = getattr(module, attr, None)
    if value is None:
        raise RuntimeError(f"{type(module).__name__}.backward: called before forward "
                           "(no saved activations); run forward first")
    return value
