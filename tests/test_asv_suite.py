"""The asv suite imports, is discoverable, and its benchmarks run (with or without asv)."""
import importlib
import inspect
import json
import pathlib
import pkgutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PREFIXES = ("time_", "track_", "mem_", "peakmem_", "timeraw_")


def _conf():
    text = (ROOT / "asv.conf.json").read_text()
    # asv allows // comments in its JSON
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("//")]
    return json.loads("\n".join(lines))


def _suite_modules():
    pkg = importlib.import_module("bench.asv_suite")
    mods = [pkg]
    for info in pkgutil.iter_modules(pkg.__path__, "bench.asv_suite."):
        mods.append(importlib.import_module(info.name))
    return mods


def _benchmarks():
    """What asv_runner's discovery would find: (name, class, method name)."""
    out = []
    for mod in _suite_modules():
        for attr, obj in vars(mod).items():
            if attr.startswith("_"):
                continue
            if inspect.isclass(obj):
                for name, _ in inspect.getmembers(obj, inspect.isfunction):
                    if name.startswith(PREFIXES):
                        out.append((f"{mod.__name__.split('.')[-1]}.{attr}.{name}", obj, name))
            elif inspect.isfunction(obj) and attr.startswith(PREFIXES):
                out.append((f"{mod.__name__}.{attr}", None, attr))
    return out


def test_conf_points_at_the_suite():
    conf = _conf()
    assert conf["benchmark_dir"] == "bench/asv_suite"
    assert (ROOT / conf["benchmark_dir"] / "__init__.py").exists()
    assert conf["branches"] == ["HEAD"] and conf["environment_type"] == "virtualenv"
    assert "python -m build --wheel" in conf["build_command"][0]
    for k in ("env_dir", "results_dir", "html_dir"):
        assert conf[k].startswith(".asv/")
    assert ".asv/" in (ROOT / ".gitignore").read_text().split()


def test_discovery_finds_every_class_and_nothing_stray():
    names = {n for n, _, _ in _benchmarks()}
    for cls in ("Conv2d", "Pool2d", "RnnTanh", "Lstm", "Gru"):
        for m in ("time_forward", "time_forward_backward", "track_seconds_per_gflop"):
            assert f"ops.{cls}.{m}" in names
    for m in ("track_gap_ratio_n1", "track_n_half_rnn", "track_rnn_step_latency"):
        assert f"parallelism_gap.Gap.{m}" in names
    # a helper imported under a benchmark-like name would be run by asv
    assert not any(n.startswith("bench.asv_suite") for n in names), names
    for _, cls, m in _benchmarks():
        if m.startswith("track_"):
            assert getattr(getattr(cls, m), "unit", None), m
        if cls is not None and getattr(cls, "params", None):
            assert len(cls.params) == len(cls.param_names)


def _smallest(cls, impl):
    return (impl, cls.params[1][0], 1)


@pytest.mark.parametrize("cls_name", ["Conv2d", "Pool2d", "RnnTanh", "Lstm", "Gru"])
def test_setup_and_one_time_method_run(cls_name):
    from bench.asv_suite import ops
    from kernels import registry
    cls = getattr(ops, cls_name)
    for impl in ("numpy/v1", "numba/v1"):
        b = cls()
        params = _smallest(cls, impl)
        try:
            b.setup(*params)
        except NotImplementedError as exc:     # e.g. a recurrent op not registered yet
            assert "no" in str(exc)
            continue
        try:
            b.time_forward(*params)
            b.time_forward_backward(*params)
        finally:
            b.teardown(*params)
    # a missing backend/version is a skip raised in setup, and teardown still works
    b = cls()
    with pytest.raises(NotImplementedError):
        b.setup("numba/v99", cls.params[1][0], 1)
    b.teardown("numba/v99", cls.params[1][0], 1)
    if not registry.backend_status()["cuda"][0]:
        with pytest.raises(NotImplementedError, match="cuda"):
            cls().setup("cuda/v1", cls.params[1][0], cls.params[2][-1])


def test_track_seconds_per_gflop_and_threads_restored():
    import numba
    from bench.asv_suite import ops
    before = numba.get_num_threads()
    b = ops.Conv2d()
    params = ("numba/v1", ops.Conv2d.params[1][0], 1)
    b.setup(*params)
    assert numba.get_num_threads() == 1
    try:
        assert b.track_seconds_per_gflop(*params) > 0
    finally:
        b.teardown(*params)
    assert numba.get_num_threads() == before


def test_gap_tracks_from_cache(monkeypatch):
    from bench.asv_suite import parallelism_gap as pg
    monkeypatch.setattr(pg, "BATCHES", [1, 2, 4])
    g = pg.Gap()
    cache = {"numba": pg._sweep("numba"), "cuda": "KernelNotFoundError: none"}
    g.setup(cache, "numba")
    assert g.track_gap_ratio_n1(cache, "numba") > 0
    assert g.track_rnn_step_latency(cache, "numba") > 0
    assert g.track_n_half_rnn(cache, "numba") >= 0
    assert g.track_seconds_per_gflop_cnn(cache, "numba") > 0
    with pytest.raises(NotImplementedError):
        g.setup(cache, "cuda")


@pytest.mark.skipif(importlib.util.find_spec("asv") is None,
                    reason="asv is in the 'bench' extra, not installed here")
def test_asv_check_discovers_the_suite(tmp_path):
    p = subprocess.run([sys.executable, "-m", "asv", "check", "--python=same"], cwd=ROOT, capture_output=True,
                       text=True, timeout=240)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "No problems found" in p.stdout, p.stdout + p.stderr
