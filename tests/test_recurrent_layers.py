"""Recurrent layers (layers/recurrent.py, layers/clip.py): whole-sequence BPTT gradient checks
with num_layers=2, bidirectional and lengths; truncation vs an explicit detach reference; torch
parity through the state_dict; numba vs numpy; errors."""
import numpy as np
import pytest

from layers.base import Parameter
from layers.clip import clip_grad_norm_, clip_grad_value_
from layers.recurrent import GRU, LSTM, RNN, JordanRNN
from util import assert_close, numerical_grad

KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def build(kind, I, Hd, **kw):
    if kind.startswith("rnn"):
        return RNN(I, Hd, nonlinearity=kind[4:], **kw)
    return {"lstm": LSTM, "gru": GRU}[kind](I, Hd, **kw)


def fwd(m, x, h0=None, c0=None, lengths=None):
    if isinstance(m, LSTM):
        out, (hn, cn) = m(x, h0, c0, lengths=lengths)
        return out, hn, cn
    out, hn = m(x, h0, lengths=lengths)
    return out, hn, None


def bwd(m, dout, dhn, dcn):
    if isinstance(m, LSTM):
        return m.backward(dout, dhn, dcn)
    return m.backward(dout, dhn)


@pytest.mark.parametrize("kind", KINDS)
def test_layer_gradcheck_two_layers_bidirectional_lengths(kind):
    """float64 central differences of a scalar loss over the whole sequence, every parameter,
    the input and the initial states."""
    rng = np.random.default_rng(10)
    T, N, I, Hd = 4, 2, 2, 2
    m = build(kind, I, Hd, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    if kind == "rnn_relu":
        for name, p in m.named_parameters():
            if name.startswith("bias"):
                p.data += 0.5
    x = rng.standard_normal((T, N, I))
    h0 = rng.standard_normal((4, N, Hd)) * 0.5
    c0 = rng.standard_normal((4, N, Hd)) * 0.5
    lengths = np.array([4, 3])
    out, hn, cn = fwd(m, x, h0, c0, lengths)
    wo, wh, wc = (rng.standard_normal(a.shape) for a in (out, hn, hn))

    def loss():
        o, h, c = fwd(m, x, h0, c0, lengths)
        return np.sum(o * wo) + np.sum(h * wh) + (np.sum(c * wc) if c is not None else 0.0)

    m.zero_grad()
    fwd(m, x, h0, c0, lengths)
    dx = bwd(m, wo, wh, wc)
    assert_close("dx", dx, numerical_grad(loss, x), 1e-7, 1e-6)
    assert_close("dh0", m.dh0, numerical_grad(loss, h0), 1e-7, 1e-6)
    if kind == "lstm":
        assert_close("dc0", m.dc0, numerical_grad(loss, c0), 1e-7, 1e-6)
    for name, p in m.named_parameters():
        assert_close(name, p.grad, numerical_grad(loss, p.data), 1e-7, 1e-6)


def test_jordan_layer_gradcheck_and_backends():
    rng = np.random.default_rng(11)
    T, N, I, Hd, O = 4, 2, 3, 3, 2
    m = JordanRNN(I, Hd, O, dtype=np.float64, seed=1)
    x = rng.standard_normal((T, N, I))
    y0 = rng.standard_normal((1, N, O))
    lengths = [4, 2]
    out, yn = m(x, y0, lengths=lengths)
    assert out.shape == (T, N, O) and yn.shape == (1, N, O)
    wo, wy = rng.standard_normal(out.shape), rng.standard_normal(yn.shape)

    def loss():
        o, y = m(x, y0, lengths=lengths)
        return np.sum(o * wo) + np.sum(y * wy)

    m.zero_grad()
    m(x, y0, lengths=lengths)
    dx = m.backward(wo, wy)
    assert_close("dx", dx, numerical_grad(loss, x), 1e-7, 1e-6)
    assert_close("dy0", m.dy0, numerical_grad(loss, y0), 1e-7, 1e-6)
    for name, p in m.named_parameters():
        assert_close(name, p.grad, numerical_grad(loss, p.data), 1e-7, 1e-6)
    m2 = JordanRNN(I, Hd, O, dtype=np.float64, backend="numba", bptt_steps=2)
    m2.load_state_dict(m.state_dict())
    m.bptt_steps = 2
    for mm in (m, m2):
        mm.zero_grad()
        mm(x, y0, lengths=lengths)
        mm.backward(wo, wy)
    for (name, p), (_, q) in zip(m.named_parameters(), m2.named_parameters()):
        assert_close(f"jordan numba vs numpy {name}", q.grad, p.grad, 1e-10, 1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_numba_layer_matches_numpy_layer(kind):
    rng = np.random.default_rng(12)
    T, N, I, Hd = 5, 3, 4, 6
    ms = [build(kind, I, Hd, num_layers=2, bidirectional=True, batch_first=True, seed=3,
                backend=b, bptt_steps=2) for b in ("numpy", "numba")]
    x = rng.standard_normal((N, T, I)).astype(np.float32)
    lengths = [5, 2, 4]
    res = []
    for m in ms:
        out, hn, cn = fwd(m, x, lengths=lengths)
        dout = np.ones_like(out)
        dx = bwd(m, dout, np.ones_like(hn), None)
        res.append((out, hn, dx, m.dh0, {k: p.grad.copy() for k, p in m.named_parameters()}))
    (o0, h0, dx0, dh00, g0), (o1, h1, dx1, dh01, g1) = res
    for name, a, b in (("out", o1, o0), ("h_n", h1, h0), ("dx", dx1, dx0), ("dh0", dh01, dh00)):
        assert_close(name, a, b, 2e-5, 2e-4)
    for k in g0:
        assert_close(k, g1[k], g0[k], 2e-5, 2e-4)


# ----------------------------------------------------------------------------------------------
# torch parity (state_dict moves unchanged)
# ----------------------------------------------------------------------------------------------
def _torch_module(torch, kind, m):
    kw = dict(num_layers=m.num_layers, bias=m.bias, batch_first=m.batch_first,
              bidirectional=m.bidirectional)
    if kind.startswith("rnn"):
        t = torch.nn.RNN(m.input_size, m.hidden_size, nonlinearity=kind[4:], **kw)
    else:
        t = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](m.input_size, m.hidden_size, **kw)
    t = t.double()
    sd = m.state_dict()
    assert list(sd) == list(t.state_dict()), "parameter names/order must be PyTorch's"
    t.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    return t


@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_torch_two_layers_bidirectional(kind, batch_first):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(13)
    T, N, I, Hd = 5, 3, 4, 3
    m = build(kind, I, Hd, num_layers=2, bidirectional=True, batch_first=batch_first,
              dtype=np.float64, seed=4)
    t = _torch_module(torch, kind, m)
    shape = (N, T, I) if batch_first else (T, N, I)
    x = rng.standard_normal(shape)
    h0 = rng.standard_normal((4, N, Hd))
    c0 = rng.standard_normal((4, N, Hd))
    out, hn, cn = fwd(m, x, h0, c0)
    dout = rng.standard_normal(out.shape)
    dhn, dcn = rng.standard_normal(hn.shape), rng.standard_normal(hn.shape)
    dx = bwd(m, dout, dhn, dcn)

    xt, h0t, c0t = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    if kind == "lstm":
        ot, (hnt, cnt) = t(xt, (h0t, c0t))
        loss = (ot * torch.from_numpy(dout)).sum() + (hnt * torch.from_numpy(dhn)).sum() \
            + (cnt * torch.from_numpy(dcn)).sum()
    else:
        ot, hnt = t(xt, h0t)
        loss = (ot * torch.from_numpy(dout)).sum() + (hnt * torch.from_numpy(dhn)).sum()
    loss.backward()
    tol = (1e-10, 1e-8)
    assert_close("output", out, ot.detach().numpy(), *tol)
    assert_close("h_n", hn, hnt.detach().numpy(), *tol)
    assert_close("dx", dx, xt.grad.numpy(), *tol)
    assert_close("dh0", m.dh0, h0t.grad.numpy(), *tol)
    if kind == "lstm":
        assert_close("c_n", cn, cnt.detach().numpy(), *tol)
        assert_close("dc0", m.dc0, c0t.grad.numpy(), *tol)
    tg = dict(t.named_parameters())
    for name, p in m.named_parameters():
        assert_close(f"grad {name}", p.grad, tg[name].grad.numpy(), *tol)


@pytest.mark.parametrize("kind", KINDS)
def test_matches_torch_packed_sequences(kind):
    """lengths == torch's pack_padded_sequence (unsorted), bidirectional, 2 layers, numba."""
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    rng = np.random.default_rng(14)
    T, N, I, Hd = 6, 4, 3, 4
    m = build(kind, I, Hd, num_layers=2, bidirectional=True, dtype=np.float64, seed=5,
              backend="numba")
    t = _torch_module(torch, kind, m)
    x = rng.standard_normal((T, N, I))
    lengths = np.array([3, 6, 1, 4])
    out, hn, cn = fwd(m, x, lengths=lengths)
    dout = rng.standard_normal(out.shape)
    dhn = rng.standard_normal(hn.shape)
    dx = bwd(m, dout, dhn, None)
    xt = torch.tensor(x, requires_grad=True)
    packed = pack_padded_sequence(xt, torch.tensor(lengths), enforce_sorted=False)
    po, hs = t(packed)
    hnt = hs[0] if kind == "lstm" else hs
    ot, _ = pad_packed_sequence(po, total_length=T)
    loss = (ot * torch.from_numpy(dout)).sum() + (hnt * torch.from_numpy(dhn)).sum()
    loss.backward()
    tol = (1e-10, 1e-8)
    assert_close("output (padded steps zero)", out, ot.detach().numpy(), *tol)
    assert_close("h_n (each sentence's own last step)", hn, hnt.detach().numpy(), *tol)
    assert_close("dx", dx, xt.grad.numpy(), *tol)
    tg = dict(t.named_parameters())
    for name, p in m.named_parameters():
        assert_close(f"grad {name}", p.grad, tg[name].grad.numpy(), *tol)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_truncated_bptt_matches_explicit_detach_reference(kind):
    """bptt_steps=k against torch cells run step by step per sentence, the state detached at
    every k-th step of that sentence (both directions, 2 layers, lengths)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(15)
    T, N, I, Hd, k = 7, 3, 2, 3, 3
    m = build(kind, I, Hd, num_layers=2, bidirectional=True, dtype=np.float64, seed=6,
              bptt_steps=k)
    x = rng.standard_normal((T, N, I))
    lengths = np.array([7, 4, 5])
    out, hn, _ = fwd(m, x, lengths=lengths)
    dout = rng.standard_normal(out.shape)
    dhn = rng.standard_normal(hn.shape)
    dx = bwd(m, dout, dhn, None)

    sd = {k_: torch.tensor(v, requires_grad=True) for k_, v in m.state_dict().items()}
    xt = torch.tensor(x, requires_grad=True)
    loss = 0
    for n in range(N):
        L = int(lengths[n])
        inp = xt[:L, n]                             # (L, I) this sentence, unpadded
        for layer in range(2):
            outs = []
            for d in range(2):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                w = (sd["weight_ih" + sfx], sd["weight_hh" + sfx], sd["bias_ih" + sfx],
                     sd["bias_hh" + sfx])
                h = torch.zeros(1, Hd, dtype=torch.float64)
                c = torch.zeros(1, Hd, dtype=torch.float64)
                ys = [None] * L
                order = range(L - 1, -1, -1) if d else range(L)
                for s, tt in enumerate(order):
                    if s > 0 and s % k == 0:        # the explicit truncation
                        h = h.detach()
                        c = c.detach()
                    if kind == "lstm":
                        h, c = torch._VF.lstm_cell(inp[tt:tt + 1], (h, c), *w)
                    elif kind == "gru":
                        h = torch._VF.gru_cell(inp[tt:tt + 1], h, *w)
                    else:
                        h = torch._VF.rnn_tanh_cell(inp[tt:tt + 1], h, *w)
                    ys[tt] = h
                loss = loss + (h[0] * torch.from_numpy(dhn[layer * 2 + d, n])).sum()
                outs.append(torch.cat(ys, 0))
            inp = torch.cat(outs, 1)
        loss = loss + (inp * torch.from_numpy(dout[:L, n])).sum()
    loss.backward()
    assert_close("dx", dx, xt.grad.numpy(), 1e-10, 1e-8)
    for name, p in m.named_parameters():
        assert_close(f"grad {name}", p.grad, sd[name].grad.numpy(), 1e-10, 1e-8)


def test_bptt_at_least_T_is_full_and_truncation_changes_grads():
    rng = np.random.default_rng(16)
    x = rng.standard_normal((6, 2, 3))
    grads = {}
    for k in (None, 6, 2):
        m = LSTM(3, 4, dtype=np.float64, seed=7, bptt_steps=k)
        out, _ = m(x)
        m.backward(np.ones_like(out))
        grads[k] = m.weight_hh_l0.grad.copy()
    assert_close("bptt_steps=T", grads[6], grads[None])
    assert not np.allclose(grads[2], grads[None])


# ----------------------------------------------------------------------------------------------
# API details
# ----------------------------------------------------------------------------------------------
def test_shapes_init_names_forget_bias_unbatched():
    m = LSTM(5, 4, num_layers=2, bidirectional=True, seed=0, forget_bias=1.0)
    names = [n for n, _ in m.named_parameters()]
    assert names[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert "weight_ih_l1_reverse" in names and m.weight_ih_l1.shape == (16, 8)
    ref = LSTM(5, 4, num_layers=2, bidirectional=True, seed=0)
    assert_close("forget slice", m.bias_ih_l0.data[4:8], ref.bias_ih_l0.data[4:8] + 1)
    assert_close("other slices", m.bias_ih_l0.data[:4], ref.bias_ih_l0.data[:4])
    bound = 1 / np.sqrt(4)
    assert all(np.abs(p.data).max() <= bound for n, p in ref.named_parameters())
    assert m.weight_hh_l0.dtype == np.float32
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)   # unbatched
    out, (hn, cn) = m(x)
    assert out.shape == (3, 8) and hn.shape == (4, 4) and cn.shape == (4, 4)
    dx = m.backward(np.ones_like(out))
    assert dx.shape == (3, 5) and m.dh0.shape == (4, 4)
    nb = GRU(5, 4, bias=False)
    assert [n for n, _ in nb.named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]
    xb = np.zeros((2, 3, 5), np.float32)
    out, hn = nb(xb)
    assert out.shape == (2, 3, 4) and hn.shape == (1, 3, 4)
    nb.backward(out)


def test_bad_input_clear_errors():
    m = GRU(3, 4, num_layers=2)
    x = np.zeros((5, 2, 3), np.float32)
    with pytest.raises(RuntimeError, match="before forward"):
        m.backward(np.zeros((5, 2, 4), np.float32))
    with pytest.raises(ValueError, match="x: expected input feature size 3"):
        m(np.zeros((5, 2, 4), np.float32))
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        m(x.astype(np.float64))
    with pytest.raises(ValueError, match="lengths"):
        m(x, lengths=[6, 2])
    with pytest.raises(ValueError, match="lengths"):
        m(x, lengths=[0, 2])
    with pytest.raises(ValueError, match="lengths"):
        m(x, lengths=[5, 2, 1])
    with pytest.raises(ValueError, match="h0"):
        m(x, np.zeros((1, 2, 4), np.float32))
    with pytest.raises(ValueError, match="h0"):
        m(x, np.zeros((2, 3, 4), np.float32))
    out, _ = m(x)
    with pytest.raises(ValueError, match="d_output"):
        m.backward(np.zeros((5, 2, 3), np.float32))
    with pytest.raises(ValueError, match="d_h_n"):
        m.backward(out, np.zeros((1, 2, 4), np.float32))
    lstm = LSTM(3, 4)
    with pytest.raises(ValueError, match="c0"):
        lstm(x, np.zeros((1, 2, 4), np.float32), np.zeros((1, 3, 4), np.float32))
    with pytest.raises(ValueError, match="nonlinearity"):
        RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="bptt_steps"):
        RNN(3, 4, bptt_steps=-2)
    with pytest.raises(ValueError, match="hidden_size"):
        LSTM(3, 0)
    j = JordanRNN(3, 4, 2)
    with pytest.raises(RuntimeError, match="before forward"):
        j.backward(np.zeros((5, 2, 2), np.float32))
    with pytest.raises(ValueError, match="y0"):
        j(x, np.zeros((1, 2, 3), np.float32))


# ----------------------------------------------------------------------------------------------
# gradient clipping
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf"), 3.0])
def test_clip_grad_norm_matches_torch(norm_type):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(17)
    m = LSTM(3, 4, dtype=np.float64, seed=0)
    extra = Parameter(np.zeros(5))
    for p in list(m.parameters()) + [extra]:
        p.grad[...] = rng.standard_normal(p.shape)
    tps = [torch.nn.Parameter(torch.from_numpy(p.data.copy()))
           for p in list(m.parameters()) + [extra]]
    for tp, p in zip(tps, list(m.parameters()) + [extra]):
        tp.grad = torch.from_numpy(p.grad.copy())
    total = clip_grad_norm_([m, extra, m.weight_hh_l0], max_norm=0.5, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tps, max_norm=0.5, norm_type=norm_type)
    assert abs(total - float(ttotal)) < 1e-9 * max(1.0, abs(total))
    for tp, p in zip(tps, list(m.parameters()) + [extra]):
        assert_close("clipped grad", p.grad, tp.grad.numpy(), 1e-12, 1e-9)
    assert clip_grad_norm_(m, max_norm=1e9) == pytest.approx(
        clip_grad_norm_(m.parameters(), max_norm=1e9))


def test_clip_grad_value():
    m = RNN(2, 3, dtype=np.float64)
    for p in m.parameters():
        p.grad[...] = np.linspace(-3, 3, p.grad.size).reshape(p.shape)
    clip_grad_value_(m, 1.5)
    assert all(np.abs(p.grad).max() <= 1.5 for p in m.parameters())
    assert m.weight_ih_l0.grad.max() == 1.5
    with pytest.raises(TypeError, match="parameters"):
        clip_grad_value_([1, 2], 1.0)
