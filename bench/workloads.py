"""Named workload sets: the shapes every benchmark, the CLI and asv run.

# N batch, C in-ch, K out-ch, H W in, P Q out, R S filter, T steps, I input, Hd hidden

A :class:`Workload` is one op at one shape, with its forward FLOP and byte counts
(:mod:`bench.flops`) and a *family*: the workloads of a family differ only in the
batch ``N`` (sentences for an RNN, images for a CNN), which is what the gap metrics
fit ``r_inf`` and ``n_1/2`` over. Names are ``f"{family}-n{N}"``.

Sets (``get_set(name)``)
------------------------
``quick``
    tiny conv, pool and recurrent shapes; each runs in well under a second on the
    NumPy reference. The README's main job and the smoke tests use it.
``seeds``
    the shapes from the project's seed issues:

    * speech RNN: ``T=100, I=160, Hd=1000``, ``N in {1, 4, 16, 64}`` for
      ``rnn_tanh``, ``lstm`` and ``gru``. (The seed's 6000-way output layer is a
      dense layer, not one of these ops, and is left out.)
    * AlexNet's five conv layers at ``N=8`` (a batch that keeps conv1 at ~0.9
      GFLOP, so a CPU can run it). conv1 follows the original paper: 96 filters
      11x11 stride 4 on a **227x227** input with **no padding** (the paper's
      "224" only gives the paper's 55x55 output with a 227 input; torchvision's
      variant uses 64 filters and pad 2 instead). conv2 27x27x96 -> 256 5x5 p2;
      conv3 13x13x256 -> 384 3x3 p1; conv4 13x13x384 -> 384 3x3 p1;
      conv5 13x13x384 -> 256 3x3 p1.
    * pooling: the seed's 16x16 -> 8x8 (window 2, stride 2) at ``N=8, C=64``,
      max and avg; AlexNet's overlapping 3x3 stride-2 max pools after conv1
      (55 -> 27), conv2 (27 -> 13) and conv5 (13 -> 6), ``N=8``.
``deepbench-train``
    Baidu DeepBench's training shapes (``code/kernels/{rnn,conv}_problems.h``).
    DeepBench's RNNs feed ``Hd`` features in (``I = Hd``) and its "vanilla" cell
    is cuDNN's ReLU RNN, so it is ``rnn_relu`` here.

    * vanilla: ``Hd in {1760, 2048, 2560}``, ``N in {16, 32, 64, 128}``, ``T=50``
    * LSTM: ``Hd in {512, 1024, 2048}``, ``N in {16, 32, 64, 128}``, ``T=25``
    * char-LM LSTM: ``Hd=256``, ``N in {16, 32, 64}``, ``T=150``
    * GRU: ``Hd in {1536, 2048, 2560}`` x ``T in {187, 375, 750}``, ``N=32``
    * conv, DeepSpeech: ``H x W = 161 x 700``, ``1 -> 32``, filter ``5 x 20``
      (h x w), stride 2, no padding, ``N in {4, 8, 16, 32}``
    * conv, OCR: ``48 x 480``, ``1 -> 16``, 3x3 p1, ``N=16``
    * conv, VGG-like 3x3 p1: ``224^2 3->64``, ``112^2 64->128``, ``56^2 128->256``,
      ``28^2 256->512``, ``N in {8, 16}``
    * conv, ResNet 1x1: ``56^2 64->256``, ``28^2 512->128``, ``N in {8, 16}``
``deepbench-inference``
    the same families with ``N in {1, 2, 4}``.

Scaling
-------
``get_set(name, scale=s)`` shrinks a set so a 2-core CPU runs it in seconds. The
exact rule, for ``s > 0`` (``s = 1`` changes nothing)::

    r(x) = max(1, floor(x * s + 0.5))
    N, T, I, Hd          -> r(.)
    H, W                 -> max(r(.), smallest size whose output is >= 1)
    C, K, filter sizes, stride, padding, dilation, pool window -> unchanged

Channels are kept on purpose: they set a convolution's GEMM depth (``C R S``) and
so its arithmetic intensity; the recurrent ``I`` and ``Hd`` are scaled because
the RNN's cost grows with ``Hd^2``. A conv's FLOPs shrink about ``s^3``, an
RNN's about ``s^4``. Workloads of a family that become identical after
scaling (e.g. ``N = 1, 2, 4`` at ``s = 0.1``) are kept once. Names and families
stay those of the unscaled set; :attr:`Workload.scale` records ``s``.

``scale_batch=False`` leaves ``N`` alone (everything else scales as above): batch
sweeps stay intact, which the ``n_1/2`` and gap-at-equal-batch metrics need.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable

import numpy as np

from . import flops as _f

__all__ = ["Workload", "OPS", "CNN_OPS", "RNN_OPS", "SHAPE_KEYS", "get_set", "set_names",
           "make_inputs", "scale_shape"]

CONV_OPS = ("conv2d",)
POOL_OPS = ("maxpool2d", "avgpool2d")
CNN_OPS = CONV_OPS + POOL_OPS
RNN_OPS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
OPS: tuple[str, ...] = CNN_OPS + RNN_OPS

SHAPE_KEYS: dict[str, tuple[str, ...]] = {
    **{op: ("N", "C", "H", "W", "K", "R", "S", "stride", "padding", "dilation") for op in CONV_OPS},
    **{op: ("N", "C", "H", "W", "kernel", "stride", "padding") for op in POOL_OPS},
    **{op: ("T", "N", "I", "Hd") for op in RNN_OPS},
}
_PAIR_KEYS = ("stride", "padding", "dilation", "kernel")


def _normalize_shape(op: str, shape: dict) -> dict:
    keys = SHAPE_KEYS[op]
    shape = dict(shape)
    if op in CONV_OPS:
        shape.setdefault("stride", 1)
        shape.setdefault("padding", 0)
        shape.setdefault("dilation", 1)
    elif op in POOL_OPS:
        shape.setdefault("stride", shape.get("kernel"))
        shape.setdefault("padding", 0)
    missing = [k for k in keys if k not in shape]
    extra = [k for k in shape if k not in keys]
    if missing or extra:
        raise ValueError(f"shape for {op!r} needs keys {list(keys)}; missing {missing}, "
                         f"unknown {extra}")
    out = {}
    for k in keys:  # fixed key order: reprs and JSON are stable
        v = shape[k]
        if k in _PAIR_KEYS:
            out[k] = _f.pair(v)
        else:
            if isinstance(v, bool) or int(v) != v or int(v) < 1:
                raise ValueError(f"shape[{k!r}] must be a positive int, got {v!r}")
            out[k] = int(v)
    return out


def _forward_counts(op: str, s: dict, itemsize: int) -> tuple[int, int]:
    """(forward FLOPs, minimal bytes); raises ValueError for an invalid shape."""
    if op in CONV_OPS:
        args = (s["N"], s["C"], s["H"], s["W"], s["K"], s["R"], s["S"],
                s["stride"], s["padding"], s["dilation"])
        return _f.conv2d_flops(*args), _f.conv2d_bytes(*args, itemsize=itemsize)
    if op in POOL_OPS:
        args = (s["N"], s["C"], s["H"], s["W"], s["kernel"], s["stride"], s["padding"])
        return _f.pool2d_flops(*args), _f.pool2d_bytes(*args, itemsize=itemsize)
    args = (op, s["T"], s["N"], s["I"], s["Hd"])
    return _f.rnn_flops(*args), _f.rnn_bytes(*args, itemsize=itemsize)


@dataclasses.dataclass(frozen=True)
class Workload:
    """One op at one shape.

    Parameters
    ----------
    name : str
        unique within a set, ``f"{family}-n{N}"`` for the built-in sets.
    op : str
        one of :data:`OPS`.
    shape : dict
        the op's dimensions, keys :data:`SHAPE_KEYS` ``[op]``: conv ``N C H W K R S
        stride padding dilation``; pool ``N C H W kernel stride padding``;
        recurrent ``T N I Hd``. ``stride``/``padding``/``dilation``/``kernel`` are
        stored as ``(h, w)`` pairs (an int is accepted); conv defaults stride 1,
        padding 0, dilation 1; pool defaults stride = kernel, padding 0.
    dtype : str
        element type of the inputs, ``"float32"`` by default.
    flops : int, optional
        FLOPs of one forward pass; computed from ``shape`` when omitted.
    bytes : int, optional
        minimal compulsory bytes of one forward; computed when omitted.
    family : str
        workloads equal but for ``N``; defaults to ``name``.
    scale : float
        the scale factor the set was built with (1.0 = the published shape).

    Raises
    ------
    ValueError
        unknown op, missing/unknown shape keys, or an output size < 1.
    """

    name: str
    op: str
    shape: dict = dataclasses.field(hash=False)
    dtype: str = "float32"
    flops: int | None = None
    bytes: int | None = None
    family: str = ""
    scale: float = 1.0

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"{self.name}: unknown op {self.op!r}; expected one of {list(OPS)}")
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("shape", _normalize_shape(self.op, self.shape))
        set_("dtype", np.dtype(self.dtype).name)
        try:
            fl, by = _forward_counts(self.op, self.shape, np.dtype(self.dtype).itemsize)
        except ValueError as exc:
            raise ValueError(f"{self.name}: {exc}") from None
        if self.flops is None:
            set_("flops", fl)
        if self.bytes is None:
            set_("bytes", by)
        if not self.family:
            set_("family", self.name)

    # ---- derived quantities ------------------------------------------------
    @property
    def kind(self) -> str:
        """``"cnn"`` for conv/pool ops, ``"rnn"`` for recurrent ones."""
        return "cnn" if self.op in CNN_OPS else "rnn"

    @property
    def batch(self) -> int:
        """``N``: images for a CNN workload, sentences for an RNN one."""
        return self.shape["N"]

    @property
    def training_flops(self) -> int:
        """FLOPs of forward + backward (:func:`bench.flops.training_flops`)."""
        return _f.training_flops(self.flops, self.op)

    @property
    def intensity(self) -> float:
        """Arithmetic intensity of the forward, FLOPs per compulsory byte."""
        return _f.arithmetic_intensity(self.flops, self.bytes)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of the op's main output: ``(N, K, P, Q)``, ``(N, C, P, Q)`` or ``(T, N, Hd)``."""
        s = self.shape
        if self.op in CONV_OPS:
            P, Q = _f.conv2d_output_size(s["H"], s["W"], s["R"], s["S"], s["stride"],
                                         s["padding"], s["dilation"])
            return (s["N"], s["K"], P, Q)
        if self.op in POOL_OPS:
            P, Q = _f.pool2d_output_size(s["H"], s["W"], s["kernel"], s["stride"], s["padding"])
            return (s["N"], s["C"], P, Q)
        return (s["T"], s["N"], s["Hd"])

    def describe(self) -> str:
        """A short human-readable shape, e.g. ``conv2d N8 3x227x227 -> 96x55x55 11x11 s4 p0``."""
        s = self.shape
        if self.op in CONV_OPS:
            _, K, P, Q = self.output_shape
            d = "" if s["dilation"] == (1, 1) else f" d{_hw(s['dilation'])}"
            return (f"conv2d N{s['N']} {s['C']}x{s['H']}x{s['W']} -> {K}x{P}x{Q} "
                    f"{s['R']}x{s['S']} s{_hw(s['stride'])} p{_hw(s['padding'])}{d}")
        if self.op in POOL_OPS:
            _, C, P, Q = self.output_shape
            return (f"{self.op} N{s['N']} {C}x{s['H']}x{s['W']} -> {P}x{Q} "
                    f"k{_hw(s['kernel'])} s{_hw(s['stride'])} p{_hw(s['padding'])}")
        return f"{self.op} T{s['T']} N{s['N']} I{s['I']} Hd{s['Hd']}"

    def with_shape(self, name: str | None = None, **changes) -> "Workload":
        """A copy with some shape entries changed; FLOPs and bytes are recomputed."""
        return dataclasses.replace(self, name=name or self.name, shape={**self.shape, **changes},
                                   flops=None, bytes=None, family=self.family)

    def with_batch(self, N: int) -> "Workload":
        """The same family at batch ``N``, named ``f"{family}-n{N}"`` (for n_1/2 sweeps)."""
        return self.with_shape(name=f"{self.family}-n{N}", N=N)

    def to_dict(self) -> dict:
        """JSON-ready dict (pairs as lists)."""
        d = dataclasses.asdict(self)
        d["shape"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.shape.items()}
        return d


def _hw(p: tuple[int, int]) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


# ----------------------------------------------------------------------------
# the sets, at scale 1
# ----------------------------------------------------------------------------
def _conv(family, N, C, H, W, K, R, S, stride=1, padding=0, dilation=1):
    return Workload(f"{family}-n{N}", "conv2d",
                    dict(N=N, C=C, H=H, W=W, K=K, R=R, S=S, stride=stride, padding=padding,
                         dilation=dilation), family=family)


def _pool(family, op, N, C, H, W, kernel, stride=None, padding=0):
    return Workload(f"{family}-n{N}", op,
                    dict(N=N, C=C, H=H, W=W, kernel=kernel,
                         stride=kernel if stride is None else stride, padding=padding),
                    family=family)


def _rnn(family, op, T, N, I, Hd):
    return Workload(f"{family}-n{N}", op, dict(T=T, N=N, I=I, Hd=Hd), family=family)


def _quick() -> list[Workload]:
    return [
        _conv("quick-conv3x3", 2, 3, 32, 32, 8, 3, 3, padding=1),
        _conv("quick-conv3x3s2", 2, 8, 16, 16, 16, 3, 3, stride=2, padding=1),
        _pool("quick-maxpool", "maxpool2d", 2, 8, 32, 32, 2),
        _pool("quick-avgpool", "avgpool2d", 2, 8, 32, 32, 2),
        _rnn("quick-rnn_tanh", "rnn_tanh", 16, 4, 32, 64),
        _rnn("quick-rnn_relu", "rnn_relu", 16, 4, 32, 64),
        _rnn("quick-lstm", "lstm", 16, 4, 32, 64),
        _rnn("quick-gru", "gru", 16, 4, 32, 64),
    ]


def _seeds() -> list[Workload]:
    out = []
    for op in ("rnn_tanh", "lstm", "gru"):
        out += [_rnn(f"speech-{op}", op, 100, n, 160, 1000) for n in (1, 4, 16, 64)]
    N = 8
    out += [
        _conv("alexnet-conv1", N, 3, 227, 227, 96, 11, 11, stride=4, padding=0),
        _conv("alexnet-conv2", N, 96, 27, 27, 256, 5, 5, padding=2),
        _conv("alexnet-conv3", N, 256, 13, 13, 384, 3, 3, padding=1),
        _conv("alexnet-conv4", N, 384, 13, 13, 384, 3, 3, padding=1),
        _conv("alexnet-conv5", N, 384, 13, 13, 256, 3, 3, padding=1),
        _pool("pool16-max", "maxpool2d", N, 64, 16, 16, 2, 2),
        _pool("pool16-avg", "avgpool2d", N, 64, 16, 16, 2, 2),
        _pool("alexnet-pool1", "maxpool2d", N, 96, 55, 55, 3, 2),
        _pool("alexnet-pool2", "maxpool2d", N, 256, 27, 27, 3, 2),
        _pool("alexnet-pool5", "maxpool2d", N, 256, 13, 13, 3, 2),
    ]
    return out


def _deepbench(batches_rnn=None, batches_conv=None) -> list[Workload]:
    """DeepBench families; ``batches_*`` overrides every family's N list (inference)."""
    def ns(default):
        return default if batches_rnn is None else batches_rnn

    def nc(default):
        return default if batches_conv is None else batches_conv

    out = []
    for hd in (1760, 2048, 2560):
        out += [_rnn(f"db-vanilla-h{hd}-t50", "rnn_relu", 50, n, hd, hd)
                for n in ns((16, 32, 64, 128))]
    for hd in (512, 1024, 2048):
        out += [_rnn(f"db-lstm-h{hd}-t25", "lstm", 25, n, hd, hd) for n in ns((16, 32, 64, 128))]
    out += [_rnn("db-charlm-lstm-h256-t150", "lstm", 150, n, 256, 256) for n in ns((16, 32, 64))]
    for hd in (1536, 2048, 2560):
        for t in (187, 375, 750):
            out += [_rnn(f"db-gru-h{hd}-t{t}", "gru", t, n, hd, hd) for n in ns((32,))]
    out += [_conv("db-deepspeech-conv1", n, 1, 161, 700, 32, 5, 20, stride=2)
            for n in nc((4, 8, 16, 32))]
    out += [_conv("db-ocr-conv1", n, 1, 48, 480, 16, 3, 3, padding=1) for n in nc((16,))]
    for hw, c, k in ((224, 3, 64), (112, 64, 128), (56, 128, 256), (28, 256, 512)):
        out += [_conv(f"db-vgg-{hw}-{c}to{k}", n, c, hw, hw, k, 3, 3, padding=1)
                for n in nc((8, 16))]
    for hw, c, k in ((56, 64, 256), (28, 512, 128)):
        out += [_conv(f"db-resnet1x1-{hw}-{c}to{k}", n, c, hw, hw, k, 1, 1)
                for n in nc((8, 16))]
    return out


_SETS = {
    "quick": _quick,
    "seeds": _seeds,
    "deepbench-train": _deepbench,
    "deepbench-inference": lambda: _deepbench(batches_rnn=(1, 2, 4), batches_conv=(1, 2, 4)),
}


def set_names() -> list[str]:
    """Names of the built-in workload sets."""
    return list(_SETS)


# ----------------------------------------------------------------------------
# scaling and selection
# ----------------------------------------------------------------------------
def _r(x: int, s: float) -> int:
    return max(1, math.floor(x * s + 0.5))


def scale_shape(op: str, shape: dict, scale: float, scale_batch: bool = True) -> dict:
    """Apply the module's scaling rule (see the module docstring) to one shape."""
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    s = _normalize_shape(op, shape)
    if scale == 1:
        return s
    for k in ("N", "T", "I", "Hd") if scale_batch else ("T", "I", "Hd"):
        if k in s:
            s[k] = _r(s[k], scale)
    if op in CONV_OPS:
        ext = [s["dilation"][i] * (k - 1) + 1 - 2 * s["padding"][i]
               for i, k in enumerate((s["R"], s["S"]))]
    elif op in POOL_OPS:
        ext = [s["kernel"][i] - 2 * s["padding"][i] for i in range(2)]
    else:
        return s
    # smallest input with output >= 1 is the padded filter extent
    s["H"] = max(_r(s["H"], scale), ext[0], 1)
    s["W"] = max(_r(s["W"], scale), ext[1], 1)
    return s


def _select_ops(ops) -> set[str] | None:
    if ops is None:
        return None
    if isinstance(ops, str):
        ops = [o.strip() for o in ops.split(",") if o.strip()]
    want: set[str] = set()
    for o in ops:
        if o == "cnn":
            want |= set(CNN_OPS)
        elif o == "rnn":
            want |= set(RNN_OPS)
        elif o in OPS:
            want.add(o)
        else:
            raise ValueError(f"unknown op {o!r}; expected some of {list(OPS)} (or 'cnn', 'rnn')")
    return want


def get_set(name: str, scale: float = 1.0, ops: Iterable[str] | str | None = None,
            dtype: str = "float32", scale_batch: bool = True) -> list[Workload]:
    """The workloads of a named set.

    Parameters
    ----------
    name : str
        one of :func:`set_names`.
    scale : float
        shrink factor (module docstring, "Scaling"); 1.0 = the published shapes.
    ops : iterable of str or str, optional
        keep only these ops (a comma-separated string works too); ``"cnn"`` and
        ``"rnn"`` select all conv/pool or all recurrent ops.
    dtype : str
        element type recorded in each workload (sets its byte counts).
    scale_batch : bool
        scale the batch ``N`` too (default); False keeps every family's batch sweep.

    Raises
    ------
    ValueError
        unknown set name (the message lists the valid ones), unknown op, bad scale.
    """
    if name not in _SETS:
        raise ValueError(f"unknown workload set {name!r}; valid sets: {set_names()}")
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    want = _select_ops(ops)
    out, seen = [], set()
    for w in _SETS[name]():
        if want is not None and w.op not in want:
            continue
        shape = scale_shape(w.op, w.shape, scale, scale_batch)
        key = (w.family, w.op, tuple(shape.items()))
        if key in seen:  # collapsed onto a sibling by scaling
            continue
        seen.add(key)
        out.append(dataclasses.replace(w, shape=shape, dtype=dtype, flops=None, bytes=None,
                                       scale=float(scale)))
    return out


# ----------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------
def _uniform(rng, shape, bound, dtype):
    return ((2 * rng.random(shape) - 1) * bound).astype(dtype, copy=False)


def _normal(rng, shape, dtype):
    if dtype in (np.float32, np.float64):
        return rng.standard_normal(shape, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


def make_inputs(workload: Workload, rng=None, dtype=None) -> dict[str, np.ndarray]:
    """Random host arrays for one call of ``workload``'s op.

    Activations are standard normal; weights and biases are uniform in
    ``+-1/sqrt(fan_in)`` (PyTorch's default init), so outputs stay O(1) and a
    vanilla recurrence neither explodes nor saturates over ``T`` steps.

    Parameters
    ----------
    workload : Workload
    rng : numpy.random.Generator or int, optional
        generator or seed (default seed 0, so calls are reproducible).
    dtype : optional
        element type; default ``workload.dtype``.

    Returns
    -------
    dict
        conv2d: ``x (N,C,H,W)``, ``weight (K,C,R,S)``, ``bias (K,)``;
        pooling: ``x (N,C,H,W)``;
        recurrent: ``x (T,N,I)``, ``h0 (N,Hd)``, for LSTM also ``c0 (N,Hd)``,
        ``w_ih (G*Hd, I)``, ``w_hh (G*Hd, Hd)``, ``b_ih (G*Hd,)``, ``b_hh (G*Hd,)``
        (PyTorch's gate order and layout).
    """
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(0 if rng is None else rng)
    dt = np.dtype(workload.dtype if dtype is None else dtype).type
    s = workload.shape
    if workload.op in CONV_OPS:
        N, C, H, W, K, R, S = (s[k] for k in "NCHWKRS")
        bound = 1.0 / math.sqrt(C * R * S)
        return {"x": _normal(rng, (N, C, H, W), dt),
                "weight": _uniform(rng, (K, C, R, S), bound, dt),
                "bias": _uniform(rng, (K,), bound, dt)}
    if workload.op in POOL_OPS:
        return {"x": _normal(rng, (s["N"], s["C"], s["H"], s["W"]), dt)}
    T, N, I, Hd = s["T"], s["N"], s["I"], s["Hd"]
    G = _f.gates(workload.op)
    bound = 1.0 / math.sqrt(Hd)
    out = {"x": _normal(rng, (T, N, I), dt),
           "h0": (0.1 * _normal(rng, (N, Hd), dt)).astype(dt, copy=False)}
    if workload.op == "lstm":
        out["c0"] = (0.1 * _normal(rng, (N, Hd), dt)).astype(dt, copy=False)
    out.update(w_ih=_uniform(rng, (G * Hd, I), bound, dt),
               w_hh=_uniform(rng, (G * Hd, Hd), bound, dt),
               b_ih=_uniform(rng, (G * Hd,), bound, dt),
               b_hh=_uniform(rng, (G * Hd,), bound, dt))
    return out
