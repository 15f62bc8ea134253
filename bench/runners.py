"""Runnable training steps (forward + backward) for one workload and one implementation.

The CLI and the asv suite both time these, so a number in ``seqgrid compare`` and
a number in asv mean the same thing: one forward pass and the complete backward
(activation and parameter gradients) of the op family on fixed random inputs.

An *implementation* is ``(backend, version)`` of the family's forward op, e.g.
``numba/v2`` for ``conv2d_forward``; the family's other ops (backward-data,
backward-weight) use the same version number where it is registered and the
backend's default otherwise. ``torch`` is an extra implementation (PyTorch's
CPU kernels) when torch is importable, and ``torch-cuda`` (cuDNN / cuBLAS, TF32 off) beside
the ``cuda`` rows when torch also sees a GPU.

Every runner exposes ``run()`` (the timed call) and ``outputs()`` (named arrays,
for validation against the float64 NumPy reference before anything is timed).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from kernels import registry

from .workloads import CONV_OPS, POOL_OPS, Workload, make_inputs

RECURRENT_OPS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
FAMILIES = tuple(CONV_OPS) + tuple(POOL_OPS) + RECURRENT_OPS


def forward_op(family: str) -> str:
    """The registry op whose versions name a family's implementations."""
    if family in CONV_OPS:
        return "conv2d_forward"
    if family in POOL_OPS:
        return f"{family}_forward"
    if family in RECURRENT_OPS:
        return f"{family}_sequence_forward"
    raise ValueError(f"op: unknown op {family!r}; expected one of {list(FAMILIES)}")


@dataclasses.dataclass(frozen=True)
class Impl:
    """One implementation to run: a registry ``backend``/``version`` or ``torch``."""

    backend: str
    version: int | None = None

    @property
    def label(self) -> str:
        return self.backend if self.version is None else f"{self.backend}/v{self.version}"


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
        return True
    except Exception:
        return False


def torch_cuda_available() -> bool:
    try:
        import torch
        return bool(torch.cuda.is_available())
    except Exception:
        return False


def impl_device(impl: Impl) -> str:
    """``"cuda"`` for implementations that run on the GPU (timed with CUDA events)."""
    return "cuda" if impl.backend in ("cuda", "torch-cuda") else "cpu"


def implementations(family: str, backends=None, versions=None, with_torch=True) -> list[Impl]:
    """Implementations of ``family`` to compare, reference first.

    Parameters
    ----------
    family : str
        ``conv2d``, ``maxpool2d``, ``avgpool2d``, ``rnn_tanh``, ``rnn_relu``, ``lstm``, ``gru``.
    backends : list of str, optional
        default: every available backend that implements the family.
    versions : list of int, optional
        only these version numbers (of non-reference backends).
    with_torch : bool
        append a ``torch`` row (CPU, beside numpy/numba rows) and a ``torch-cuda`` row (beside
        cuda rows, when torch sees a GPU) when torch is importable.
    """
    op = forward_op(family)
    status = registry.backend_status()
    if backends is None:
        # cuda-emu is a correctness tool (the CUDA C run on the CPU); time it only on request
        backends = [b for b in registry.BACKENDS
                    if b != "cuda-emu" and status[b][0] and registry.versions(op, b)]
    out = []
    for b in backends:
        if b in ("torch", "torch-cuda"):
            continue
        registry.check_backend(b)
        vs = registry.versions(op, b)
        if not vs:
            raise registry.KernelNotFoundError(f"backends: {family!r} has no {b!r} implementation")
        if versions is not None and b != "numpy":
            missing = [v for v in versions if v not in vs]
            if missing and not set(versions) & set(vs):
                raise registry.KernelNotFoundError(
                    f"versions: {family!r} on {b!r} has versions {vs}, not {missing}")
            vs = [v for v in vs if v in versions]
        out += [Impl(b, v) for v in vs]
    if with_torch and torch_available():
        # PyTorch beside the devices being compared: CPU kernels next to numpy/numba rows,
        # cuDNN/cuBLAS next to cuda rows
        if any(i.backend in ("numpy", "numba") for i in out):
            out.append(Impl("torch"))
        if any(i.backend == "cuda" for i in out) and torch_cuda_available():
            out.append(Impl("torch-cuda"))
    return out


def _companion(op: str, backend: str, version: int | None):
    """Same version of a companion op where registered, the backend default otherwise."""
    if version is not None and version in registry.versions(op, backend):
        return registry.get(op, backend, version)
    return registry.get(op, backend)


class Runner:
    """A prepared training step: ``run()`` to time it, ``outputs()`` to validate it."""

    def __init__(self, run: Callable[[], dict]):
        self._run = run

    def run(self):
        return self._run()

    def outputs(self) -> dict:
        return {k: _to_host(v) for k, v in self._run().items()}


def _to_host(a):
    if type(a).__module__.startswith("cupy"):
        return a.get()
    if type(a).__module__.startswith("torch"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def gradient_seeds(w: Workload, dtype, seed: int = 1) -> dict:
    """Fixed random upstream gradients for ``w``'s outputs."""
    rng = np.random.default_rng(seed)
    s = w.shape
    if w.op in RECURRENT_OPS:
        g = {"dy": rng.standard_normal((s["T"], s["N"], s["Hd"])),
             "dh_n": rng.standard_normal((s["N"], s["Hd"]))}
        if w.op == "lstm":
            g["dc_n"] = rng.standard_normal((s["N"], s["Hd"]))
    else:
        g = {"dout": rng.standard_normal(w.output_shape)}
    return {k: v.astype(dtype) for k, v in g.items()}


def make_runner(w: Workload, impl: Impl, dtype=None, seed: int = 0) -> Runner:
    """Build the training step of ``w`` on ``impl`` with inputs from ``make_inputs`` (drawn in
    ``w.dtype``, then converted to ``dtype``)."""
    dtype = np.dtype(w.dtype if dtype is None else dtype)
    # drawn in the workload's dtype, then converted: a float64 runner of a float32 workload
    # sees exactly the float32 run's numbers (a reference for it)
    inp = {k: v.astype(dtype) for k, v in
           make_inputs(w, np.random.default_rng(seed), w.dtype).items()}
    grads = {k: v.astype(dtype) for k, v in gradient_seeds(w, w.dtype).items()}
    if impl.backend in ("torch", "torch-cuda"):
        return _torch_runner(w, inp, grads, "cuda" if impl.backend == "torch-cuda" else "cpu")
    if impl.backend == "cuda":        # inputs live on the device, like a user's
        import cupy
        inp = {k: cupy.asarray(v) for k, v in inp.items()}
        grads = {k: cupy.asarray(v) for k, v in grads.items()}
    if w.op in CONV_OPS:
        return _conv_runner(w, impl, inp, grads)
    if w.op in POOL_OPS:
        return _pool_runner(w, impl, inp, grads)
    return _recurrent_runner(w, impl, inp, grads)


def _conv_runner(w, impl, inp, grads):
    s = w.shape
    geo = (s["stride"], s["padding"], s["dilation"])
    fwd = registry.get("conv2d_forward", impl.backend, impl.version)
    bwd_data = _companion("conv2d_backward_data", impl.backend, impl.version)
    bwd_weight = _companion("conv2d_backward_weight", impl.backend, impl.version)
    x, weight, bias, dout = inp["x"], inp["weight"], inp["bias"], grads["dout"]
    dweight, dbias = weight * 0, bias * 0     # zeros in the inputs' array module

    def step():
        out = fwd(x, weight, bias, *geo)
        dx = bwd_data(dout, weight, x.shape, *geo)
        dweight[...] = 0
        dbias[...] = 0
        bwd_weight(dweight, dbias, dout, x, *geo)
        return {"out": out, "dx": dx, "dweight": dweight, "dbias": dbias}

    return Runner(step)


def pool_kwargs(w: Workload) -> dict:
    s = w.shape
    return {"kernel_size": s["kernel"], "stride": s["stride"], "padding": s["padding"]}


def _pool_runner(w, impl, inp, grads):
    fwd = registry.get(f"{w.op}_forward", impl.backend, impl.version)
    bwd = _companion(f"{w.op}_backward", impl.backend, impl.version)
    x, dout, kw = inp["x"], grads["dout"], pool_kwargs(w)
    if w.op == "maxpool2d":
        def step():
            out, argmax = fwd(x, **kw)
            return {"out": out, "dx": bwd(dout, argmax, x.shape)}
    else:
        def step():
            return {"out": fwd(x, **kw), "dx": bwd(dout, x.shape, **kw)}
    return Runner(step)


def _recurrent_runner(w, impl, inp, grads):
    cell = w.op
    fwd = registry.get(f"{cell}_sequence_forward", impl.backend, impl.version)
    bwd = _companion(f"{cell}_sequence_backward", impl.backend, impl.version)
    x, h0, w_ih, w_hh, b_ih, b_hh = (inp[k] for k in ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"))
    dw = {k: inp[k[1:]] * 0 for k in ("dw_ih", "dw_hh", "db_ih", "db_hh")}

    def step():
        for a in dw.values():
            a[...] = 0
        if cell == "lstm":
            y, h_n, c_n, cache = fwd(x, h0, inp["c0"], w_ih, w_hh, b_ih, b_hh)
            dx, dh0, dc0 = bwd(dw["dw_ih"], dw["dw_hh"], dw["db_ih"], dw["db_hh"], grads["dy"],
                               grads["dh_n"], grads["dc_n"], x, w_ih, w_hh, cache)
            return {"y": y, "h_n": h_n, "c_n": c_n, "dx": dx, "dh0": dh0, "dc0": dc0, **dw}
        y, h_n, cache = fwd(x, h0, w_ih, w_hh, b_ih, b_hh)
        dx, dh0 = bwd(dw["dw_ih"], dw["dw_hh"], dw["db_ih"], dw["db_hh"], grads["dy"],
                      grads["dh_n"], x, w_ih, w_hh, cache)
        return {"y": y, "h_n": h_n, "dx": dx, "dh0": dh0, **dw}

    return Runner(step)


# ----------------------------------------------------------------------------
# PyTorch, for comparison only (never a dependency)
# ----------------------------------------------------------------------------
def torch_recurrent_module(w: Workload, T: dict):
    """``torch.nn.{RNN,LSTM,GRU}`` for ``w`` on the device of the tensors ``T``, holding the
    weights ``T["w_ih"]``, ``T["w_hh"]``, ``T["b_ih"]``, ``T["b_hh"]``."""
    import torch
    s = w.shape
    cls = {"rnn_tanh": torch.nn.RNN, "rnn_relu": torch.nn.RNN, "lstm": torch.nn.LSTM,
           "gru": torch.nn.GRU}[w.op]
    kwargs = {"nonlinearity": w.op[4:]} if w.op.startswith("rnn_") else {}
    mod = cls(s["I"], s["Hd"], dtype=T["x"].dtype, device=T["x"].device, **kwargs)
    with torch.no_grad():
        for k, name in (("w_ih", "weight_ih_l0"), ("w_hh", "weight_hh_l0"),
                        ("b_ih", "bias_ih_l0"), ("b_hh", "bias_hh_l0")):
            getattr(mod, name).copy_(T[k])
    return mod


def _torch_runner(w, inp, grads, device="cpu"):
    import torch
    import torch.nn.functional as F

    torch.backends.cudnn.allow_tf32 = False          # compare FP32 with FP32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        import numba
        torch.set_num_threads(numba.get_num_threads())   # same thread count as numba
    except Exception:
        pass
    T = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in inp.items()}
    G = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in grads.items()}

    if w.op in CONV_OPS:
        s = w.shape
        params = [T[k].requires_grad_() for k in ("x", "weight", "bias")]

        def step():
            for p in params:
                p.grad = None
            out = F.conv2d(T["x"], T["weight"], T["bias"], s["stride"], s["padding"], s["dilation"])
            out.backward(G["dout"])
            return {"out": out.detach(), "dx": T["x"].grad, "dweight": T["weight"].grad,
                    "dbias": T["bias"].grad}
        return Runner(step)

    if w.op in POOL_OPS:
        kw = pool_kwargs(w)
        fn = F.max_pool2d if w.op == "maxpool2d" else F.avg_pool2d
        x = T["x"].requires_grad_()

        def step():
            x.grad = None
            out = fn(x, kw["kernel_size"], kw["stride"], kw["padding"])
            out.backward(G["dout"])
            return {"out": out.detach(), "dx": x.grad}
        return Runner(step)

    mod = torch_recurrent_module(w, T)
    x = T["x"].requires_grad_()
    h0 = T["h0"][None].clone().requires_grad_()
    c0 = T["c0"][None].clone().requires_grad_() if w.op == "lstm" else None

    def step():
        mod.zero_grad()
        for t in (x, h0, c0):
            if t is not None:
                t.grad = None
        if c0 is not None:
            y, (h_n, c_n) = mod(x, (h0, c0))
            loss = (y * G["dy"]).sum() + (h_n[0] * G["dh_n"]).sum() + (c_n[0] * G["dc_n"]).sum()
        else:
            y, h_n = mod(x, h0)
            loss = (y * G["dy"]).sum() + (h_n[0] * G["dh_n"]).sum()
        loss.backward()
        out = {"y": y.detach(), "h_n": h_n[0].detach(), "dx": x.grad, "dh0": h0.grad[0],
               "dw_ih": mod.weight_ih_l0.grad, "dw_hh": mod.weight_hh_l0.grad,
               "db_ih": mod.bias_ih_l0.grad, "db_hh": mod.bias_hh_l0.grad}
        if c0 is not None:
            out.update(c_n=c_n[0].detach(), dc0=c0.grad[0])
        return out
    return Runner(step)


# ----------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------
@dataclasses.dataclass
class Mismatch:
    tensor: str
    worst_error: float
    scale: float


def validate(got: dict, ref: dict, dtype) -> Mismatch | None:
    """Compare outputs tensor by tensor: ``max|got-ref| <= tol * max(1, max|ref|)``.

    The tolerance is relative to the tensor's largest magnitude because sums of
    thousands of float32 products (conv, BPTT weight gradients) carry absolute
    error proportional to it. float32: 1e-3, float64: 1e-9. Returns the first
    failing tensor (NaN anywhere counts as a failure), or None.
    """
    tol = 1e-3 if np.dtype(dtype) == np.float32 else 1e-9
    for name, r in ref.items():
        g = np.asarray(got.get(name)) if name in got else None
        if g is None or g.shape != r.shape:
            return Mismatch(name, float("inf"), 0.0)
        scale = max(1.0, float(np.max(np.abs(r))) if r.size else 1.0)
        err = float(np.max(np.abs(g.astype(np.float64) - r))) if r.size else 0.0
        if not np.isfinite(err) or err > tol * scale:
            return Mismatch(name, err, scale)
    return None


def reference_outputs(w: Workload, seed: int = 0) -> dict:
    """The family's outputs from the NumPy reference computed in float64."""
    # inputs are drawn in the workload's dtype and then widened, so every
    # implementation sees exactly the same numbers
    inp = make_inputs(w, np.random.default_rng(seed), w.dtype)
    grads = gradient_seeds(w, w.dtype)
    inp64 = {k: v.astype(np.float64) for k, v in inp.items()}
    grads64 = {k: v.astype(np.float64) for k, v in grads.items()}
    impl = Impl("numpy", 1)
    if w.op in CONV_OPS:
        r = _conv_runner(w, impl, inp64, grads64)
    elif w.op in POOL_OPS:
        r = _pool_runner(w, impl, inp64, grads64)
    else:
        r = _recurrent_runner(w, impl, inp64, grads64)
    return r.outputs()
