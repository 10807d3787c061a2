"""Shared helpers for the adatok benchmarks: device sync, best-of timing, FLOP counting, the matmul
reference rate, environment banner and plain-text tables.

Timing protocol shared by every benchmark (:func:`interleave`, :data:`PROTOCOL`): warm-up, then
rounds in which every compared path runs once, in alternating order (A B C, C B A, ...); wall and
process CPU time per sample, the device synchronised before each clock read; medians and min-max
reported, results also written as JSON (:func:`write_json`). A sample is one call, or, for calls
shorter than 50 ms, the mean of enough back-to-back calls to last 50 ms. :func:`best_of` is the
one-path form (it runs the same protocol and returns the minimum, as the older scripts report).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

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
    """One path through :func:`interleave`: ``warmup`` untimed calls, then ``repeats`` timed samples
    (several calls each when a call is shorter than 50 ms); returns (best seconds per call, all samples)."""
    t = interleave({"fn": fn}, device, rounds=max(1, repeats), warmup=warmup)["fn"]
    return t.min, list(t.wall)


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


# --------------------------------------------------------------------------- the timing protocol
PROTOCOL = ("warm-up call(s) per path; then R rounds, each running every path once in alternating order "
            "(A B C, C B A, A B C, ...) so drift and background load hit all paths alike; a sample is one call, "
            "or the mean of back-to-back calls lasting >= 50 ms for short calls; device synchronised before "
            "each clock read (torch.cuda.synchronize on CUDA); wall time (perf_counter) and process CPU time "
            "(process_time, all threads) per sample; reported: median and min-max over the rounds")


def median(values: Sequence[float]) -> float:
    """The median (mean of the two middle values for an even count)."""
    s = sorted(values)
    if not s:
        raise ValueError("median of no values")
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else 0.5 * (s[mid - 1] + s[mid])


@dataclass
class Timing:
    """The samples of one path: seconds per call, one wall and one CPU value per round."""

    name: str
    wall: list = field(default_factory=list)
    cpu: list = field(default_factory=list)
    calls: int = 1

    @property
    def median(self) -> float:
        return median(self.wall)

    @property
    def min(self) -> float:
        return min(self.wall)

    @property
    def max(self) -> float:
        return max(self.wall)

    @property
    def cpu_median(self) -> float:
        return median(self.cpu)

    def cpu_share(self, threads: int | None = None) -> float | None:
        """CPU time over wall time x threads of the median sample (~1 uncontended on CPU)."""
        threads = threads or max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
        return self.cpu_median / (self.median * threads) if self.median > 0 else None

    def summary(self) -> dict:
        return {"name": self.name, "median_s": self.median, "min_s": self.min, "max_s": self.max,
                "cpu_median_s": self.cpu_median, "cpu_min_s": min(self.cpu), "cpu_max_s": max(self.cpu),
                "calls_per_sample": self.calls, "wall_s": list(self.wall), "cpu_s": list(self.cpu)}


def round_order(names: Sequence[str], round_index: int) -> list:
    """Alternating order: as given in even rounds, reversed in odd ones (A B C, C B A, ...), so no
    path always runs right after the same neighbour or always first."""
    return list(names) if round_index % 2 == 0 else list(reversed(names))


def interleave(fns: Mapping[str, Callable[[], object]], device: torch.device | str = "cpu", rounds: int = 5,
               warmup: int = 1, min_sample: float = 0.05, max_calls: int = 100, calls: Mapping[str, int] | None = None,
               timings: Mapping[str, Timing] | None = None, wall_clock: Callable[[], float] = time.perf_counter,
               cpu_clock: Callable[[], float] = time.process_time) -> dict:
    """Time every path of ``fns`` with the shared protocol (:data:`PROTOCOL`); returns name -> :class:`Timing`.

    ``calls`` fixes the calls per sample (else the last warm-up call sets it, 1 without warm-up);
    ``timings`` continues earlier results (extra rounds); the clocks are injectable for tests."""
    device = torch.device(device)
    names = list(fns)
    out = {n: (timings[n] if timings and n in timings else Timing(n)) for n in names}
    for n in names:
        first = None
        for _ in range(warmup):
            synchronize(device)
            t0 = wall_clock()
            fns[n]()
            synchronize(device)
            first = wall_clock() - t0
        if calls and n in calls:
            out[n].calls = int(calls[n])
        elif first is not None:
            out[n].calls = calls_per_sample(first, min_sample, max_calls)
    start = len(next(iter(out.values())).wall) if out else 0
    for k in range(start, start + max(1, rounds)):
        for n in round_order(names, k):
            c = out[n].calls
            synchronize(device)
            c0, t0 = cpu_clock(), wall_clock()
            for _ in range(c):
                fns[n]()
            synchronize(device)
            out[n].wall.append((wall_clock() - t0) / c)
            out[n].cpu.append((cpu_clock() - c0) / c)
    return out


def ratio_text(ref: Timing, other: Timing) -> str:
    """``ref.median / other.median`` with the range over rounds (min/max of per-round ratios)."""
    per_round = [a / b for a, b in zip(ref.wall, other.wall) if b > 0]
    mid = ref.median / other.median
    if len(per_round) < 2:
        return f"{mid:.2f}x"
    return f"{mid:.2f}x ({min(per_round):.2f}-{max(per_round):.2f})"


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` (plus the protocol text) as indented JSON; creates the folder."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"protocol": PROTOCOL, **payload}, indent=2, default=str))
    return out
