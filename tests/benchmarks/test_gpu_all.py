"""benchmarks/gpu_all.py: parts run under their own time limits, a failing or hanging part does not stop
the others, the summary collects what the parts wrote; and the real tokenizer part runs in --smoke mode."""

import json
import sys

import gpu_all


def test_limits_failures_and_summary(tmp_path, monkeypatch):
    rows = {"rows": [{"model": "deit_small_patch16_224", "batch": 64, "dtype": "bf16", "variant": "tome_r13",
                      "tokens": [184, 41], "images_per_s": 1234.5, "vs_plain": 1.61}]}
    fixture = tmp_path / "fixture.json"
    fixture.write_text(json.dumps(rows))
    out = tmp_path / "out"
    writer = f"import shutil; shutil.copy({str(fixture)!r}, {str(out / 'reduction.json')!r})"
    fake = [("reduction", [sys.executable, "-c", writer], 30),
            ("titok", [sys.executable, "-c", "import time; time.sleep(30)"], 1),
            ("alit", [sys.executable, "-c", "raise SystemExit(3)"], 30)]
    monkeypatch.setattr(gpu_all, "parts", lambda args: fake)
    assert gpu_all.main(["--out", str(out), "--device", "cpu"]) == 1
    summary = json.loads((out / "summary.json").read_text())
    status = {p["part"]: p["status"] for p in summary["parts"]}
    assert status == {"reduction": "ok", "titok": "timed out after 1 s", "alit": "failed (exit 3)"}
    assert [p["seconds"] < 20 for p in summary["parts"]] == [True, True, True]  # the sleeper was stopped
    md = (out / "summary.md").read_text()
    assert "| deit_small_patch16_224 | 64 | bf16 | tome_r13 | 41 | 1234.5 | 1.61x |" in md
    assert (out / "titok.log").read_text().startswith("$ ")


def test_bf16_peaks():
    assert gpu_all.bf16_peak("NVIDIA H200") == ("H200", 989.4)
    assert gpu_all.bf16_peak("NVIDIA H100 80GB HBM3") == ("H100", 989.4)
    assert gpu_all.bf16_peak("NVIDIA H100 PCIe") == ("H100 PCIe", 756.0)
    assert gpu_all.bf16_peak("CPU") == (None, None)


def test_smoke_tokenizer_part_runs_on_cpu(tmp_path):
    out = tmp_path / "smoke"
    rc = gpu_all.main(["--out", str(out), "--smoke", "--parts", "titok", "--part-limit", "300"])
    log = (out / "titok.log").read_text()
    assert rc == 0, log[-2000:]
    data = json.loads((out / "titok.json").read_text())
    assert {(r["model"], r["variant"], r["op"]) for r in data["rows"]} >= {("titok_tiny", "ours", "encode"),
                                                                          ("titok_tiny", "eager", "encode")}
    assert "| titok_tiny | 1 | fp32 | encode |" in (out / "summary.md").read_text()
