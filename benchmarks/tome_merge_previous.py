#!/usr/bin/env python
"""ToMe's merge step and a ToMe DeiT-S forward: this checkout's ``reduction/ops.py`` vs an earlier one,
in the same run (outputs checked bit for bit, then timed interleaved with the shared protocol).

    git show d4479bb~1:src/adatok/reduction/ops.py > /tmp/ops_prev.py     # the code before the gather+scatter merge
    PYTHONPATH=src python benchmarks/tome_merge_previous.py /tmp/ops_prev.py 1 64
"""
import importlib.util
import sys
from pathlib import Path

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import adatok.reduction as R  # noqa: E402
from adatok.reduction import ops as new  # noqa: E402

spec = importlib.util.spec_from_file_location("ops_prev", sys.argv[1])
old = importlib.util.module_from_spec(spec)
spec.loader.exec_module(old)
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
for B in (1, 64):
    x = torch.randn(B, 197, 384, generator=g); m = torch.randn(B, 197, 64, generator=g); size = torch.ones(B, 197, 1)
    def step(o):
        mg = o.bipartite_soft_matching(m, 13)
        return o.merge_wavg(mg, x, size)
    def with_source(o):
        mg = o.bipartite_soft_matching(m, 13)
        return (*o.merge_wavg(mg, x, size), o.merge_source(mg, o.initial_source(x)))
    a, b = with_source(old), with_source(new)
    assert all(torch.equal(u, v) for u, v in zip(a, b)), "outputs differ"
    t = common.interleave({"previous": lambda: step(old), "new": lambda: step(new)}, "cpu", rounds=9)
    print(f"merge step B={B}: previous {t['previous'].median*1e3:.3f} ms, new {t['new'].median*1e3:.3f} ms: "
          f"{common.ratio_text(t['previous'], t['new'])}, CPU {t['previous'].cpu_median / t['new'].cpu_median:.2f}x")
# whole model, DeiT-S r=13
torch.manual_seed(0)
base = timm.create_model("deit_small_patch16_224").eval()
R.apply(base, "tome", r=13)
for B in [int(b) for b in sys.argv[2:]] or [1, 64]:
    x = torch.rand(B, 3, 224, 224, generator=g)
    def with_ops(o):
        def run():
            R.tome.ops = o
            try:
                return base(x)
            finally:
                R.tome.ops = new
        return run
    with torch.inference_mode():
        assert torch.equal(with_ops(old)(), with_ops(new)()), "logits differ"
        t = common.interleave({"previous": with_ops(old), "new": with_ops(new)}, "cpu", rounds=7 if B == 1 else 5)
    print(f"DeiT-S ToMe r=13 B={B}: previous {B/t['previous'].median:.2f} img/s, new {B/t['new'].median:.2f} img/s: "
          f"{common.ratio_text(t['previous'], t['new'])}, CPU-time {t['previous'].cpu_median / t['new'].cpu_median:.3f}x")
