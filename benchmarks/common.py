"""Shared helpers for the adatok benchmarks: device sync, best-of timing, FLOP counting, the matmul
reference rate, environment banner and plain-text tables.

Timing rule used by every benchmark: one warm-up call, then the best (minimum) of ``repeats`` timed
samples (``time.perf_counter``; on CUDA the device is synchronised before reading the clock). A sample
is one call, or, for calls shorter than 50 ms, the mean of enough back-to-back calls to last 50 ms.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
from typing import Callable, Iterable, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_once(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds for one call of ``fn`` (device work included)."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def time_calls(fn: Callable[[], object], device: torch.device, calls: int = 1) -> float:
    """Mean seconds per call over ``calls`` back-to-back calls in one timed sample."""
    return time_calls_share(fn, device, calls)[0]


def time_calls_share(fn: Callable[[], object], device: torch.device, calls: int = 1) -> tuple[float, float | None]:
    """(mean seconds per call, CPU share) of one sample of ``calls`` back-to-back calls.

    The CPU share (CPU devices only, else None) is this process's CPU time over wall time x the
    number of torch threads: ~0.9-1.0 for compute-bound code on an idle machine, lower when other
    processes took cores away during the sample (the timing is then not representative)."""
    synchronize(device)
    cpu0, start = time.process_time(), time.perf_counter()
    for _ in range(calls):
        fn()
    synchronize(device)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    share = None
    if device.type == "cpu" and wall > 0:
        share = cpu / (wall * max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    return wall / calls, share


def calls_per_sample(seconds_per_call: float, min_sample: float = 0.05, max_calls: int = 100) -> int:
    """How many calls one timed sample needs to last ``min_sample`` seconds: sub-millisecond calls
    are too short for a single perf_counter reading to mean much."""
    if seconds_per_call <= 0:
        return max_calls
    return int(min(max_calls, max(1, math.ceil(min_sample / seconds_per_call))))


def best_of(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    """``warmup`` untimed calls, then ``repeats`` timed samples (several calls each when a call is
    shorter than 50 ms); returns (best seconds per call, all samples)."""
    first = 0.0
    for _ in range(warmup):
        first = time_once(fn, device)
    calls = calls_per_sample(first) if warmup else 1
    times = [time_calls(fn, device, calls) for _ in range(max(1, repeats))]
    return min(times), times


def autocast_ctx(device: torch.device, dtype: torch.dtype):
    """``torch.autocast`` for reduced precision, a no-op context for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call, as ``torch.utils.flop_counter`` counts them (matmuls, convolutions,
    attention; element-wise ops, norms and softmax count 0). Run it on the fp32 forward."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def matmul_gflops(device: torch.device, n: int = 2048, dtype: torch.dtype = torch.float32, repeats: int = 5) -> float:
    """Best GFLOP/s of an ``n x n @ n x n`` matmul on ``device`` with the current thread count:
    the reference "what this machine can do" rate the model rows are compared against."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    best, _ = best_of(lambda: torch.mm(a, b), device, repeats=repeats, warmup=2)
    return 2 * n**3 / best / 1e9


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({os.cpu_count()} logical cores)"


def cpu_busy_fraction(interval: float = 0.5) -> float | None:
    """Fraction of all CPUs busy during ``interval`` seconds (from /proc/stat; None off Linux).
    Called while this process sleeps, it measures what OTHER processes take from the machine."""
    def snap():
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
        return sum(vals[:8]), idle

    try:
        t0, i0 = snap()
        time.sleep(interval)
        t1, i1 = snap()
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, 1.0 - (i1 - i0) / max(1, t1 - t0))


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def environment(device: torch.device) -> dict:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": load_average(),
    }


def warn_if_busy(busy: float | None, where: str = "before the benchmark") -> str | None:
    """A warning line when other processes keep the CPU busy: with every core used by torch's
    OpenMP pool, one competing process can slow small ops down 10-100x (threads wait at barriers
    for a descheduled peer), so such timings say nothing about the code."""
    if busy is not None and busy > 0.15:
        return (f"WARNING: other processes used {100 * busy:.0f}% of the {os.cpu_count()} CPUs {where}: "
                f"timings (and the matmul reference) will be noisy; rerun on an idle machine "
                f"(or use --threads below the free core count).")
    return None


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Right-aligned plain-text table (left-aligned first column)."""
    text = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(headers))]

    def line(r):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    out = [line(text[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in text[1:]]
    return "\n".join(out)


def fmt(x: float | None, digits: int = 3) -> str:
    """Compact number: 3 significant digits, '-' for missing."""
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}g}"
