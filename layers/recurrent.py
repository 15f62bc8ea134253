"""Recurrent layers with full backpropagation through time: :class:`RNN`, :class:`LSTM`,
:class:`GRU` (PyTorch's API, parameter names and init) and :class:`JordanRNN`.

All math lives in :mod:`kernels.recurrent`; a layer only loops over layers and directions and calls
``self.kernel("{cell}_sequence_forward" / "_backward")``.

Shapes (like ``torch.nn.LSTM``): input ``(T, N, I)`` (``(N, T, I)`` with ``batch_first=True``,
``(T, I)`` unbatched), output ``(T, N, D*Hd)``, ``h_n`` / ``c_n`` ``(D*num_layers, N, Hd)`` with
D = 2 if bidirectional else 1, ordered ``[layer0 fwd, layer0 reverse, layer1 fwd, ...]``.

``forward(x, h0=None[, c0=None], lengths=None)``; ``lengths`` (N,) ints in [1, T]: padded steps
neither change the state nor carry gradient, outputs there are zero, ``h_n`` is each sentence's
state at its own last step, and the reverse direction starts at each sentence's own last step
(PyTorch's packed-sequence semantics, without packing).

``backward(d_output, d_h_n=None[, d_c_n=None])`` runs BPTT through all steps, layers and
directions, returns dx (in the input's layout), stores ``dh0`` (and ``dc0``) as attributes and
accumulates (``+=``) every parameter's ``.grad``. ``d_output=None`` means no gradient from the
outputs. ``backward`` may be called several times after one ``forward``.

Truncated BPTT (``bptt_steps=k``, None = full): along the time axis of every layer and direction,
the state entering step s (counted per sentence in that direction's processing order) is treated as
a constant for s = k, 2k, ...: the gradient arriving at step s flows back through steps
s, ..., k*floor(s/k) only (exactly "run chunks of k steps and detach the state between chunks");
the first chunk reaches h0. Gradients into lower layers (dx) and parameter gradients of every step
are kept: only the recurrent path is cut.
"""
from __future__ import annotations

import math

import numpy as np

from kernels._checks import check_float_array
from kernels.recurrent import GATES, _check_lengths, _check_bptt
from .base import Module, Parameter, make_rng, saved, uniform_init

__all__ = ["RNN", "LSTM", "GRU", "JordanRNN"]


def _pos_int(name, v, minimum=1):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {v!r}")
    return int(v)


class _Saved:
    __slots__ = ("layers", "lengths", "T", "N", "batched")

    def __init__(self, layers, lengths, T, N, batched):
        self.layers, self.lengths, self.T, self.N, self.batched = layers, lengths, T, N, batched


class _RNNBase(Module):
    """Common machinery of RNN / LSTM / GRU (see the module docstring)."""

    def __init__(self, cell, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 bidirectional=False, dtype=np.float32, seed=None, backend="numpy",
                 bptt_steps=None):
        super().__init__(backend)
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
        self.cell = cell
        self.input_size = _pos_int("input_size", input_size)
        self.hidden_size = _pos_int("hidden_size", hidden_size)
        self.num_layers = _pos_int("num_layers", num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        self.bptt_steps = _check_bptt(bptt_steps) or None
        self.dtype = dtype
        G, Hd, D = GATES[cell], self.hidden_size, self.num_directions
        rng = make_rng(seed)
        bound = 1.0 / math.sqrt(Hd)                  # PyTorch: U(-1/sqrt(Hd), 1/sqrt(Hd)) for all
        for layer in range(self.num_layers):
            in_l = self.input_size if layer == 0 else D * Hd
            for d in range(D):
                sfx = self._suffix(layer, d)
                setattr(self, "weight_ih" + sfx, Parameter(uniform_init(rng, (G * Hd, in_l), bound, dtype)))
                setattr(self, "weight_hh" + sfx, Parameter(uniform_init(rng, (G * Hd, Hd), bound, dtype)))
                if self.bias:
                    setattr(self, "bias_ih" + sfx, Parameter(uniform_init(rng, (G * Hd,), bound, dtype)))
                    setattr(self, "bias_hh" + sfx, Parameter(uniform_init(rng, (G * Hd,), bound, dtype)))
        self._saved = None

    # -- helpers ---------------------------------------------------------------
    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @staticmethod
    def _suffix(layer, d):
        return f"_l{layer}" + ("_reverse" if d else "")

    def _params(self, layer, d):
        sfx = self._suffix(layer, d)
        w_ih = getattr(self, "weight_ih" + sfx)
        w_hh = getattr(self, "weight_hh" + sfx)
        b_ih = getattr(self, "bias_ih" + sfx) if self.bias else None
        b_hh = getattr(self, "bias_hh" + sfx) if self.bias else None
        return w_ih, w_hh, b_ih, b_hh

    def _time_major(self, name, a, batched, last):
        """(N,T,F) / (T,F) / (T,N,F) -> contiguous (T, N, F)."""
        if not batched:
            return self.xp.ascontiguousarray(a[:, None, :])
        if self.batch_first:
            return self.xp.ascontiguousarray(a.transpose(1, 0, 2))
        return a

    def _from_time_major(self, a, batched):
        if not batched:
            return a[:, 0, :]
        if self.batch_first:
            return self.xp.ascontiguousarray(a.transpose(1, 0, 2))
        return a

    def _check_state(self, name, s, N, batched):
        L = self.num_layers * self.num_directions
        if s is None:
            return self.xp.zeros((L, N, self.hidden_size), self.dtype)
        s = check_float_array(name, s, 3 if batched else 2, dtype=self.dtype, xp=self.xp)
        want = (L, N, self.hidden_size) if batched else (L, self.hidden_size)
        if tuple(s.shape) != want:
            raise ValueError(f"{name}: expected shape {want} (num_layers*num_directions, "
                             f"{'N, ' if batched else ''}hidden_size), got {tuple(s.shape)}")
        return self.xp.ascontiguousarray(s if batched else s[:, None, :])

    # -- forward / backward -----------------------------------------------------
    def _forward(self, x, h0, c0, lengths):
        x = check_float_array("x", x, (2, 3), xp=self.xp)
        if x.dtype != self.dtype:
            raise TypeError(f"x: expected dtype {self.dtype} (the layer's dtype), got {x.dtype}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"x: expected input feature size {self.input_size} (last axis), "
                             f"got {x.shape[-1]} (shape {tuple(x.shape)})")
        batched = x.ndim == 3
        xt = self._time_major("x", x, batched, self.input_size)
        T, N, _ = xt.shape
        if T < 1 or N < 1:
            raise ValueError(f"x: expected at least one step and one sentence, got shape {x.shape}")
        lengths = _check_lengths(lengths, T, N)
        h0 = self._check_state("h0", h0, N, batched)
        lstm = self.cell == "lstm"
        if lstm:
            c0 = self._check_state("c0", c0, N, batched)
        fwd = self.kernel(f"{self.cell}_sequence_forward")
        D = self.num_directions
        hn = self.xp.empty((self.num_layers * D, N, self.hidden_size), self.dtype)
        cn = self.xp.empty_like(hn) if lstm else None
        layers, inp = [], xt
        for layer in range(self.num_layers):
            outs, caches = [], []
            for d in range(D):
                i = layer * D + d
                w_ih, w_hh, b_ih, b_hh = self._params(layer, d)
                args = (inp, h0[i], c0[i]) if lstm else (inp, h0[i])
                res = fwd(*args, w_ih.data, w_hh.data, None if b_ih is None else b_ih.data,
                          None if b_hh is None else b_hh.data, lengths=lengths, reverse=bool(d))
                outs.append(res[0])
                hn[i] = res[1]
                if lstm:
                    cn[i] = res[2]
                caches.append(res[-1])
            layers.append((inp, caches))
            inp = outs[0] if D == 1 else self.xp.concatenate(outs, axis=2)
        self._saved = _Saved(layers, lengths, T, N, batched)
        out = self._from_time_major(inp, batched)
        if not batched:
            hn = hn[:, 0, :]
            cn = None if cn is None else cn[:, 0, :]
        return (out, (hn, cn)) if lstm else (out, hn)

    def _backward(self, d_output, d_h_n, d_c_n):
        st = saved(self, "_saved")
        T, N, D, Hd = st.T, st.N, self.num_directions, self.hidden_size
        lstm = self.cell == "lstm"
        if d_output is not None:
            d_output = check_float_array("d_output", d_output, 3 if st.batched else 2,
                                         dtype=self.dtype, xp=self.xp)
            d_output = self._time_major("d_output", d_output, st.batched, D * Hd)
            if tuple(d_output.shape) != (T, N, D * Hd):
                want = (T, N, D * Hd) if not self.batch_first else (N, T, D * Hd)
                raise ValueError(f"d_output: expected shape {want if st.batched else (T, D * Hd)}"
                                 f", got {tuple(d_output.shape)}")
        dhn = None if d_h_n is None else self._check_state("d_h_n", d_h_n, N, st.batched)
        dcn = None
        if lstm and d_c_n is not None:
            dcn = self._check_state("d_c_n", d_c_n, N, st.batched)
        bwd = self.kernel(f"{self.cell}_sequence_backward")
        dh0 = self.xp.zeros((self.num_layers * D, N, Hd), self.dtype)
        dc0 = self.xp.zeros_like(dh0) if lstm else None
        dout = d_output
        for layer in range(self.num_layers - 1, -1, -1):
            inp, caches = st.layers[layer]
            dinp = None
            for d in range(D):
                i = layer * D + d
                w_ih, w_hh, b_ih, b_hh = self._params(layer, d)
                dy = None
                if dout is not None:
                    dy = dout if D == 1 else self.xp.ascontiguousarray(dout[:, :, d * Hd:(d + 1) * Hd])
                grads = (w_ih.grad, w_hh.grad, None if b_ih is None else b_ih.grad,
                         None if b_hh is None else b_hh.grad)
                hgrads = (dy, None if dhn is None else dhn[i])
                if lstm:
                    hgrads += (None if dcn is None else dcn[i],)
                res = bwd(*grads, *hgrads, inp, w_ih.data, w_hh.data, caches[d],
                          lengths=st.lengths, reverse=bool(d), bptt_steps=self.bptt_steps)
                dinp = res[0] if dinp is None else dinp + res[0]
                dh0[i] = res[1]
                if lstm:
                    dc0[i] = res[2]
            dout = dinp
        if not st.batched:
            dh0 = dh0[:, 0, :]
            dc0 = None if dc0 is None else dc0[:, 0, :]
        self.dh0 = dh0
        self.dc0 = dc0
        return self._from_time_major(dout, st.batched)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.bptt_steps:
            s += f", bptt_steps={self.bptt_steps}"
        return s + f", backend={self.backend!r}"


class RNN(_RNNBase):
    """Elman RNN, ``h_t = f(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``, f = tanh or relu.

    ``RNN(input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
    batch_first=False, bidirectional=False, dtype=np.float32, seed=None, backend="numpy",
    bptt_steps=None)``; ``forward(x, h0=None, lengths=None) -> (output, h_n)``;
    ``backward(d_output, d_h_n=None) -> dx`` (``self.dh0`` holds dh0).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, bidirectional=False, dtype=np.float32, seed=None,
                 backend="numpy", bptt_steps=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self_cell = "rnn_" + nonlinearity
        super().__init__(self_cell, input_size, hidden_size, num_layers, bias, batch_first,
                         bidirectional, dtype, seed, backend, bptt_steps)
        self.nonlinearity = nonlinearity

    def forward(self, x, h0=None, lengths=None):
        return self._forward(x, h0, None, lengths)

    def backward(self, d_output, d_h_n=None):
        return self._backward(d_output, d_h_n, None)


class LSTM(_RNNBase):
    """LSTM with PyTorch's gates (i, f, g, o) and equations.

    ``LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    bidirectional=False, dtype=np.float32, seed=None, backend="numpy", bptt_steps=None,
    forget_bias=0.0)``. ``forget_bias`` is ADDED to the forget-gate slice ``[Hd:2Hd]`` of every
    ``bias_ih`` after PyTorch's uniform init (1.0 is the common choice; 0.0 = PyTorch exactly;
    ignored with ``bias=False``).

    ``forward(x, h0=None, c0=None, lengths=None) -> (output, (h_n, c_n))`` (``h0`` may also be
    the tuple ``(h0, c0)`` as in PyTorch); ``backward(d_output, d_h_n=None, d_c_n=None) -> dx``
    (``self.dh0`` / ``self.dc0`` hold the state gradients).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 bidirectional=False, dtype=np.float32, seed=None, backend="numpy",
                 bptt_steps=None, forget_bias=0.0):
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first,
                         bidirectional, dtype, seed, backend, bptt_steps)
        self.forget_bias = float(forget_bias)
        if self.bias and self.forget_bias:
            Hd = self.hidden_size
            for layer in range(self.num_layers):
                for d in range(self.num_directions):
                    getattr(self, "bias_ih" + self._suffix(layer, d)).data[Hd:2 * Hd] += \
                        self.forget_bias

    def forward(self, x, h0=None, c0=None, lengths=None):
        if isinstance(h0, tuple):
            if c0 is not None:
                raise TypeError("h0: pass either the tuple (h0, c0) or h0 and c0, not both")
            h0, c0 = h0
        return self._forward(x, h0, c0, lengths)

    def backward(self, d_output, d_h_n=None, d_c_n=None):
        if isinstance(d_h_n, tuple):
            d_h_n, d_c_n = d_h_n
        return self._backward(d_output, d_h_n, d_c_n)


class GRU(_RNNBase):
    """GRU with PyTorch's gates (r, z, n), ``n = tanh(W_in x + b_in + r*(W_hn h + b_hn))``,
    ``h_t = (1-z)*n + z*h_{t-1}``.

    ``forward(x, h0=None, lengths=None) -> (output, h_n)``; ``backward(d_output, d_h_n=None)``.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 bidirectional=False, dtype=np.float32, seed=None, backend="numpy",
                 bptt_steps=None):
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first,
                         bidirectional, dtype, seed, backend, bptt_steps)

    def forward(self, x, h0=None, lengths=None):
        return self._forward(x, h0, None, lengths)

    def backward(self, d_output, d_h_n=None):
        return self._backward(d_output, d_h_n, None)


class JordanRNN(Module):
    """Jordan network: the previous step's OUTPUT (not its hidden state) feeds the hidden layer.

    ``h_t = tanh(x_t W_ih^T + y_{t-1} W_hy^T + b_h)``, ``y_t = h_t W_ho^T + b_o``, ``y_{-1} = y0``
    (zeros by default). Parameters ``weight_ih (Hd, I)``, ``weight_hy (Hd, O)``, ``bias_h (Hd,)``,
    ``weight_ho (O, Hd)``, ``bias_o (O,)``, all ``U(-1/sqrt(Hd), 1/sqrt(Hd))``.

    ``forward(x, y0=None, lengths=None) -> (output (T, N, O), y_n (1, N, O))``;
    ``backward(d_output, d_y_n=None) -> dx`` (``self.dy0`` holds dy0); full or truncated BPTT
    (``bptt_steps``, same semantics as :class:`RNN`), ``lengths`` as in :class:`RNN`.
    """

    def __init__(self, input_size, hidden_size, output_size, bias=True, batch_first=False,
                 dtype=np.float32, seed=None, backend="numpy", bptt_steps=None):
        super().__init__(backend)
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
        self.input_size = _pos_int("input_size", input_size)
        self.hidden_size = Hd = _pos_int("hidden_size", hidden_size)
        self.output_size = O = _pos_int("output_size", output_size)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bptt_steps = _check_bptt(bptt_steps) or None
        self.dtype = dtype
        rng = make_rng(seed)
        bound = 1.0 / math.sqrt(Hd)
        self.weight_ih = Parameter(uniform_init(rng, (Hd, self.input_size), bound, dtype))
        self.weight_hy = Parameter(uniform_init(rng, (Hd, O), bound, dtype))
        self.bias_h = Parameter(uniform_init(rng, (Hd,), bound, dtype)) if self.bias else None
        self.weight_ho = Parameter(uniform_init(rng, (O, Hd), bound, dtype))
        self.bias_o = Parameter(uniform_init(rng, (O,), bound, dtype)) if self.bias else None
        self._saved = None

    def forward(self, x, y0=None, lengths=None):
        x = check_float_array("x", x, 3, dtype=None, xp=self.xp)
        if x.dtype != self.dtype:
            raise TypeError(f"x: expected dtype {self.dtype} (the layer's dtype), got {x.dtype}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"x: expected input feature size {self.input_size} (last axis), "
                             f"got {x.shape[-1]}")
        xt = self.xp.ascontiguousarray(x.transpose(1, 0, 2)) if self.batch_first else x
        T, N, _ = xt.shape
        lengths = _check_lengths(lengths, T, N)
        if y0 is not None:
            y0 = check_float_array("y0", y0, 3, dtype=self.dtype, xp=self.xp)
            if tuple(y0.shape) != (1, N, self.output_size):
                raise ValueError(f"y0: expected shape {(1, N, self.output_size)}, "
                                 f"got {tuple(y0.shape)}")
            y0 = y0[0]
        out, yn, cache = self.kernel("jordan_sequence_forward")(
            xt, y0, self.weight_ih.data, self.weight_hy.data,
            None if self.bias_h is None else self.bias_h.data, self.weight_ho.data,
            None if self.bias_o is None else self.bias_o.data, lengths=lengths)
        self._saved = (xt, cache, lengths)
        if self.batch_first:
            out = self.xp.ascontiguousarray(out.transpose(1, 0, 2))
        return out, yn[None]

    def backward(self, d_output, d_y_n=None):
        xt, cache, lengths = saved(self, "_saved")
        T, N, _ = xt.shape
        if d_output is not None:
            d_output = check_float_array("d_output", d_output, 3, dtype=self.dtype, xp=self.xp)
            if self.batch_first:
                d_output = self.xp.ascontiguousarray(d_output.transpose(1, 0, 2))
            if tuple(d_output.shape) != (T, N, self.output_size):
                raise ValueError(f"d_output: expected shape (T, N, O) = {(T, N, self.output_size)}"
                                 f" (time-major), got {tuple(d_output.shape)}")
        if d_y_n is not None:
            d_y_n = check_float_array("d_y_n", d_y_n, 3, dtype=self.dtype, xp=self.xp)
            if tuple(d_y_n.shape) != (1, N, self.output_size):
                raise ValueError(f"d_y_n: expected shape {(1, N, self.output_size)}, "
                                 f"got {tuple(d_y_n.shape)}")
            d_y_n = d_y_n[0]
        dx, dy0 = self.kernel("jordan_sequence_backward")(
            self.weight_ih.grad, self.weight_hy.grad,
            None if self.bias_h is None else self.bias_h.grad, self.weight_ho.grad,
            None if self.bias_o is None else self.bias_o.grad, d_output, d_y_n, xt,
            self.weight_ih.data, self.weight_hy.data, self.weight_ho.data, cache,
            lengths=lengths, bptt_steps=self.bptt_steps)
        self.dy0 = dy0[None]
        if self.batch_first:
            dx = self.xp.ascontiguousarray(dx.transpose(1, 0, 2))
        return dx

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, {self.output_size}"
                f"{'' if self.bias else ', bias=False'}, backend={self.backend!r}")
