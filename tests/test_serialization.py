"""save / load / load_state_dict_file: .npz round trips, error messages, and state_dicts moving
between seqgrid and torch.nn in both directions (CNN with BatchNorm, LSTM model)."""
import numpy as np
import pytest

import layers as L
from layers.base import Module
from util import assert_close

F64 = dict(dtype=np.float64)


def cnn(backend="numpy", seed=0):
    return L.Sequential(
        L.Conv2d(1, 4, 3, padding=1, seed=seed, backend=backend, **F64),
        L.ReLU(backend=backend),
        L.MaxPool2d(2, backend=backend),
        L.BatchNorm2d(4, backend=backend, **F64),
        L.Flatten(backend=backend),
        L.Linear(4 * 3 * 3, 5, seed=seed + 1, backend=backend, **F64),
    )


class Tagger(Module):
    """LSTM + linear head; the attribute names give the keys ``lstm.*`` and ``head.*``."""

    def __init__(self, backend="numpy", seed=0):
        super().__init__(backend)
        self.lstm = L.LSTM(5, 6, num_layers=2, seed=seed, backend=backend, **F64)
        self.head = L.Linear(6, 3, seed=seed + 1, backend=backend, **F64)

    def forward(self, x):
        out, _ = self.lstm.forward(x)
        return self.head.forward(out)


def trained_cnn(backend="numpy"):
    """A CNN whose BatchNorm has non-trivial running statistics."""
    model = cnn(backend)
    rng = np.random.default_rng(0)
    for _ in range(3):
        model.forward(rng.standard_normal((4, 1, 6, 6)) * 2 + 1)
    return model


def test_round_trip(tmp_path):
    src = trained_cnn()
    path = L.save(src, tmp_path / "cnn")
    assert path.endswith("cnn.npz")
    sd = L.load_state_dict_file(tmp_path / "cnn")       # ".npz" found without the suffix
    ref = src.state_dict()
    assert list(sd) == list(ref)
    for k in ref:
        assert sd[k].dtype == ref[k].dtype, k
        assert_close(k, sd[k], ref[k], 0, 0)
    assert sd["3.num_batches_tracked"].dtype == np.int64 and int(sd["3.num_batches_tracked"]) == 3
    dst = cnn("numba", seed=5)
    assert L.load(dst, path) is dst
    for k, v in dst.state_dict().items():
        assert_close(k, v, ref[k], 0, 0)
    x = np.random.default_rng(1).standard_normal((2, 1, 6, 6))
    src.eval()
    dst.eval()
    assert_close("same output", dst.forward(x), src.forward(x), 1e-12, 1e-12)


def test_round_trip_lstm_model(tmp_path):
    src, dst = Tagger(seed=0), Tagger("numba", seed=3)
    L.load(dst, L.save(src, tmp_path / "tagger.npz"))
    names = list(dst.state_dict())
    assert names[0] == "lstm.weight_ih_l0" and names[-1] == "head.bias"
    x = np.random.default_rng(2).standard_normal((4, 2, 5))
    assert_close("same output", dst.forward(x), src.forward(x), 1e-12, 1e-12)


def test_load_errors_name_keys_and_shapes(tmp_path):
    model = cnn()
    sd = model.state_dict()
    bad = dict(sd)
    bad["5.weight"] = np.zeros((5, 35))
    bad["3.running_var"] = np.ones(3)
    np.savez(tmp_path / "shape.npz", **bad)
    before = model[5].weight.data.copy()
    with pytest.raises(ValueError, match=r"'3.running_var': model \(4,\), file \(3,\); "
                                         r"'5.weight': model \(5, 36\), file \(5, 35\)"):
        L.load(model, tmp_path / "shape.npz")
    assert_close("nothing modified", model[5].weight.data, before, 0, 0)
    missing = dict(sd)
    del missing["3.running_mean"]
    np.savez(tmp_path / "missing.npz", **missing, extra=np.zeros(1))
    with pytest.raises(KeyError, match=r"missing keys \['3.running_mean'\], unexpected keys "
                                       r"\['extra'\]; the model expects \['0.weight'"):
        L.load(model, tmp_path / "missing.npz")
    # strict=False loads what matches and ignores the rest
    L.load(model, tmp_path / "missing.npz", strict=False)
    with pytest.raises(FileNotFoundError, match="path: no such file"):
        L.load(model, tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="is not a readable .npz state_dict"):
        L.load_state_dict_file(tmp_path / "junk.npz")
    with pytest.raises(TypeError, match="model: expected a layers.Module"):
        L.save({"a": 1}, tmp_path / "x.npz")


def torch_cnn(torch):
    tn = torch.nn
    return tn.Sequential(tn.Conv2d(1, 4, 3, padding=1), tn.ReLU(), tn.MaxPool2d(2),
                         tn.BatchNorm2d(4), tn.Flatten(), tn.Linear(36, 5)).double()


def torch_tagger(torch):
    class TorchTagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(5, 6, num_layers=2)
            self.head = torch.nn.Linear(6, 3)

        def forward(self, x):
            return self.head(self.lstm(x)[0])

    return TorchTagger().double()


@pytest.mark.parametrize("which", ["cnn", "lstm"])
def test_seqgrid_to_torch_via_file(tmp_path, which):
    torch = pytest.importorskip("torch")
    ours = trained_cnn("numba") if which == "cnn" else Tagger("numba")
    theirs = torch_cnn(torch) if which == "cnn" else torch_tagger(torch)
    path = L.save(ours, tmp_path / "m.npz")
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in L.load_state_dict_file(path).items()})
    assert list(theirs.state_dict()) == list(ours.state_dict())
    shape = (3, 1, 6, 6) if which == "cnn" else (7, 3, 5)
    x = np.random.default_rng(3).standard_normal(shape)
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        assert_close(f"{which} eval output", ours.forward(x), theirs(torch.from_numpy(x)).numpy(),
                     1e-10, 1e-9)
    if which == "cnn":      # train mode: batch statistics and the same running-stat update
        ours.train()
        theirs.train()
        with torch.no_grad():
            assert_close("train output", ours.forward(x), theirs(torch.from_numpy(x)).numpy(),
                         1e-10, 1e-9)
        assert_close("running_var", ours[3].running_var, theirs[3].running_var.numpy(), 1e-12, 1e-10)


@pytest.mark.parametrize("which", ["cnn", "lstm"])
def test_torch_to_seqgrid_via_file(tmp_path, which):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = torch_cnn(torch) if which == "cnn" else torch_tagger(torch)
    shape = (4, 1, 6, 6) if which == "cnn" else (6, 2, 5)
    if which == "cnn":      # give torch's BatchNorm real running statistics
        with torch.no_grad():
            theirs(torch.randn(*shape, dtype=torch.float64) * 3 + 1)
    np.savez(tmp_path / "t.npz", **{k: v.numpy() for k, v in theirs.state_dict().items()})
    ours = cnn("numpy", seed=9) if which == "cnn" else Tagger("numpy", seed=9)
    L.load(ours, tmp_path / "t.npz")
    if which == "cnn":
        assert int(ours[3].num_batches_tracked) == 1
    x = np.random.default_rng(4).standard_normal(shape)
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        assert_close(f"{which} output", ours.forward(x), theirs(torch.from_numpy(x)).numpy(),
                     1e-10, 1e-9)
