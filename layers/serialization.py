"""Save and load a model's ``state_dict`` as a NumPy ``.npz`` archive.

The archive holds one array per ``state_dict`` key, under PyTorch's names (``0.weight``,
``lstm.weight_ih_l0``, ``3.running_mean``, ...), so it moves to and from PyTorch with nothing
but ``torch.from_numpy`` / ``.numpy()``::

    save(model, "model.npz")
    torch_model.load_state_dict({k: torch.from_numpy(v)
                                 for k, v in load_state_dict_file("model.npz").items()})

    np.savez("from_torch.npz", **{k: v.numpy() for k, v in torch_model.state_dict().items()})
    load(model, "from_torch.npz")

No pickles are written or read (``allow_pickle=False``).
"""
from __future__ import annotations

import os
import zipfile
from collections import OrderedDict

import numpy as np

from .base import Module

__all__ = ["save", "load", "load_state_dict_file"]


def _npz_path(path) -> str:
    path = os.fspath(path)
    return path if path.endswith(".npz") else path + ".npz"


def save(model: Module, path) -> str:
    """Write ``model.state_dict()`` to ``path`` as an uncompressed ``.npz``.

    Parameters
    ----------
    model : Module
    path : str or os.PathLike
        ``.npz`` is appended when missing (as :func:`numpy.savez` does).

    Returns
    -------
    str
        the path written.
    """
    if not isinstance(model, Module):
        raise TypeError(f"model: expected a layers.Module, got {type(model).__name__}")
    path = _npz_path(path)
    state = model.state_dict()
    bad = [k for k in state if "/" in k]
    if bad:
        raise ValueError(f"model: state_dict keys {bad} contain '/', which an .npz cannot store")
    np.savez(path, **state)
    return path


def load_state_dict_file(path) -> "OrderedDict[str, np.ndarray]":
    """Read an ``.npz`` written by :func:`save` (or by ``np.savez`` from any state_dict).

    Parameters
    ----------
    path : str or os.PathLike
        tried as given, then with ``.npz`` appended.

    Returns
    -------
    OrderedDict
        key -> NumPy array, in the order they were saved.

    Raises
    ------
    FileNotFoundError
        neither ``path`` nor ``path + ".npz"`` exists.
    ValueError
        the file is not an ``.npz`` archive of plain arrays.
    """
    p = os.fspath(path)
    if not os.path.exists(p) and os.path.exists(_npz_path(p)):
        p = _npz_path(p)
    if not os.path.exists(p):
        raise FileNotFoundError(f"path: no such file {p!r}")
    try:
        with np.load(p, allow_pickle=False) as f:
            if not hasattr(f, "files"):
                raise ValueError("a single .npy array, not an .npz archive")
            return OrderedDict((k, f[k]) for k in f.files)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise ValueError(f"path: {p!r} is not a readable .npz state_dict ({exc})") from None


def _expected_shapes(model: Module) -> "OrderedDict[str, tuple]":
    out = OrderedDict()
    for mod_name, mod in model.named_modules():
        pre = f"{mod_name}." if mod_name else ""
        for name, p in mod._parameters.items():
            if p is not None:
                out[pre + name] = tuple(p.data.shape)
        for name, b in mod._buffers().items():
            out[pre + name] = tuple(b.shape)
    return out


def check_state_dict(model: Module, state: dict, strict: bool = True) -> None:
    """Raise a message naming every problem before anything is copied into ``model``.

    Raises
    ------
    KeyError
        missing or unexpected keys (``strict``); lists both and, when few, the keys expected.
    ValueError
        shape mismatches; names each key with the model's and the file's shape.
    """
    want = _expected_shapes(model)
    if strict:
        missing = [k for k in want if k not in state]
        unexpected = [k for k in state if k not in want]
        if missing or unexpected:
            hint = f"; the model expects {list(want)}" if len(want) <= 40 else ""
            raise KeyError(f"state_dict: missing keys {missing}, unexpected keys {unexpected}"
                           f"{hint}")
    wrong = [f"{k!r}: model {want[k]}, file {tuple(np.shape(v))}"
             for k, v in state.items() if k in want and tuple(np.shape(v)) != want[k]]
    if wrong:
        raise ValueError("state_dict: shape mismatch for " + "; ".join(wrong))


def load(model: Module, path, strict: bool = True) -> Module:
    """Load an ``.npz`` state_dict into ``model`` (in place, on the model's device).

    Parameters
    ----------
    model : Module
    path : str or os.PathLike
    strict : bool
        every key of the model must be in the file and vice versa.

    Returns
    -------
    Module
        ``model``.

    Raises
    ------
    KeyError, ValueError
        see :func:`check_state_dict`; nothing is modified when they are raised.
    """
    if not isinstance(model, Module):
        raise TypeError(f"model: expected a layers.Module, got {type(model).__name__}")
    state = load_state_dict_file(path)
    check_state_dict(model, state, strict)
    model.load_state_dict(state, strict=strict)
    return model
