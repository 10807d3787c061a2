"""Where a forward's time goes: ``torch.profiler`` self-CPU time per forward, per op and per group
(GEMMs = the linear layers; the attention kernel; a token reduction's own ops: matching, sorting,
gathers, scatters, masks; the patch embedding; the rest), profiled in interleaved chunks so that
background load hits every model alike (the timing protocol of ``common.interleave``). Used by
``reduction_profile.py`` and ``reduction_latency.py``."""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile

from common import round_order

GROUPS = {
    "GEMM (linear)": ("aten::addmm", "aten::mm", "aten::linear", "aten::matmul"),
    "attention kernel": ("aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product",
                         "aten::_flash_attention", "aten::_efficient_attention", "aten::softmax", "aten::_softmax"),
    "reduction ops": ("aten::gather", "aten::scatter", "aten::scatter_reduce", "aten::sort", "aten::argsort",
                      "aten::topk", "aten::max", "aten::bmm", "aten::linalg_vector_norm", "aten::cat",
                      "aten::arange", "aten::fill_", "aten::masked_fill", "aten::log", "aten::where",
                      "aten::index", "aten::mean"),
    "patch embedding": ("aten::mkldnn_convolution", "aten::convolution", "aten::_convolution"),
}
OTHER = "other (norms, GELU, adds, copies, dispatch)"


def group_of(name: str) -> str:
    for group, names in GROUPS.items():
        if any(name == n or name.startswith(n) for n in names):
            return group
    return OTHER


def breakdown(models: dict, x, calls: int, top: int = 8, rounds: int = 4) -> dict:
    """Self-CPU ms per forward of every model, per op (the ``top`` largest) and per group. Profiled in
    ``rounds`` interleaved chunks (A B C, C B A, ...) of ``calls / rounds`` forwards after one warm-up."""
    rounds = max(1, min(rounds, calls))
    per_call = max(1, calls // rounds)
    sums: dict = {name: {} for name in models}
    with torch.inference_mode():
        for m in models.values():
            m(x)
        for k in range(rounds):
            for name in round_order(list(models), k):
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    for _ in range(per_call):
                        models[name](x)
                for e in prof.key_averages():
                    ms, count = sums[name].get(e.key, (0.0, 0))
                    sums[name][e.key] = (ms + e.self_cpu_time_total / 1e3, count + e.count)
    n = per_call * rounds
    out = {}
    for name, events in sums.items():
        ranked = sorted(events.items(), key=lambda kv: kv[1][0], reverse=True)
        groups: dict = {}
        for key, (ms, _) in ranked:
            groups[group_of(key)] = groups.get(group_of(key), 0.0) + ms / n
        out[name] = {"total_ms": sum(ms for ms, _ in events.values()) / n, "groups": groups,
                     "top": [{"op": key, "group": group_of(key), "ms": ms / n, "calls": c / n}
                             for key, (ms, c) in ranked[:top]],
                     "ops_per_forward": sum(c for _, c in events.values()) / n, "forwards": n}
    return out


def group_table(results: dict) -> tuple[list, list]:
    """(headers, rows) of the per-group table of ``breakdown``'s results."""
    groups = [*GROUPS, OTHER]
    rows = [[name, f"{r['total_ms']:.1f}",
             *[f"{r['groups'].get(g, 0.0):.2f} ({100 * r['groups'].get(g, 0.0) / r['total_ms']:.0f}%)" for g in groups],
             f"{r['ops_per_forward']:.0f}"] for name, r in results.items()]
    return ["variant", "total", *groups, "ops/forward"], rows
