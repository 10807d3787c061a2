"""benchmarks/prefix_select.py at toy size: every path is timed and select agrees with the exhaustive rule."""

import json


def test_prefix_select_benchmark_runs_and_checks_the_answer(tmp_path, capsys):
    import prefix_select

    out = tmp_path / "r.json"
    assert prefix_select.main(["--batch", "6", "--rounds", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    for path in ("fixed-64", "select-psnr", "exhaustive", "lagrangian"):
        assert path in text
    report = json.loads(out.read_text())
    assert report["batch"] == 6 and report["same_as_exhaustive_where_monotone"]
    assert report["differ"] <= report["non_monotone"]
    assert all(t["median_s"] > 0 for t in report["timings"].values())


def test_benchmark_mains_leave_grad_mode_on():
    import torch

    import prefix_select

    prefix_select.main(["--batch", "2", "--rounds", "1"])
    assert torch.is_grad_enabled()
