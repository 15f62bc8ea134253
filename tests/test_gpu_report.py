"""bench.gpu_report's parts that need no GPU: version filters and the ratio summary."""
import argparse

import pytest

from bench import gpu_report


def test_version_filter_per_section():
    p = argparse.ArgumentParser()
    assert gpu_report._parse_versions(p, ["conv=2,v3", "rnn=1"]) == {"conv": {2, 3}, "rnn": {1}}
    labels = [i.label for i in gpu_report._impls("conv2d_forward", {2})]
    assert labels == ["cuda/v2", "torch-cuda"]
    assert [i.label for i in gpu_report._impls("conv2d_forward")][0] == "cuda/v1"
    for bad in (["conv=x"], ["gpu=1"]):
        with pytest.raises(SystemExit):
            gpu_report._parse_versions(p, bad)


def test_summary_ratios_and_pool_bandwidth():
    rows = [dict(workload="w", op="maxpool2d", impl="cuda/v2", forward_ms=1.0,
                 forward_stream_ms=0.8, train_ms=4.0, bytes=2e9, ok=True),
            dict(workload="w", op="maxpool2d", impl="torch-cuda", forward_ms=2.0,
                 forward_stream_ms=1.2, train_ms=2.0, bytes=2e9, ok=True)]
    (s,) = gpu_report.summarize(rows, copy_gbs=4000.0)
    assert s["forward_vs_torch"] == 2.0 and s["train_vs_torch"] == 0.5
    assert s["forward_stream_vs_torch"] == pytest.approx(1.5)
    assert s["forward_gbs"] == pytest.approx(2000.0) and s["forward_pct_copy"] == pytest.approx(50)
    assert s["forward_stream_gbs"] == pytest.approx(2500.0)
    assert s["forward_stream_pct_copy"] == pytest.approx(62.5)


def test_row_text_names_both_timings():
    row = dict(workload="w", impl="cuda/v3", forward_ms=1.0, forward_stream_ms=0.5,
               train_ms=3.0, rel_err=1e-7, ok=True, worst_tensor="")
    text = gpu_report._row_text(row)
    assert "fwd     1.000 ms" in text and "stream    0.500" in text


def test_conv_rows_carry_the_backward_passes():
    """conv rows time dL/dx and dL/dW alone too: their ratios and the row text name them."""
    rows = [dict(workload="c", op="conv2d", impl="cuda/v4", forward_ms=1.0,
                 forward_stream_ms=1.0, train_ms=4.0, bwd_data_ms=2.0, bwd_weight_ms=1.0,
                 rel_err=1e-7, ok=True, worst_tensor=""),
            dict(workload="c", op="conv2d", impl="torch-cuda", forward_ms=1.0,
                 forward_stream_ms=1.0, train_ms=3.0, bwd_data_ms=1.0, bwd_weight_ms=1.5,
                 ok=True)]
    (s,) = gpu_report.summarize(rows, copy_gbs=4000.0)
    assert s["bwd_data_vs_torch"] == 0.5 and s["bwd_weight_vs_torch"] == 1.5
    assert "dx 2.000 dW 1.000 ms" in gpu_report._row_text(rows[0])
