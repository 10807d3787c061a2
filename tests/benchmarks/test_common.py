"""The shared timing protocol (benchmarks/common.py): order, warm-up, statistics. No timing assertions:
the clocks are fake, advanced by the calls themselves."""

import json

import pytest

import common


class FakeClock:
    """Wall and CPU clocks that only move when a path runs (each path costs a fixed time)."""

    def __init__(self):
        self.wall = 0.0
        self.cpu = 0.0

    def path(self, log, name, costs):
        it = iter(costs)

        def fn():
            log.append(name)
            dt = next(it)
            self.wall += dt
            self.cpu += dt / 2  # half the wall time on this process's CPU
        return fn


def test_rounds_alternate_and_warmup_comes_first():
    clock, log = FakeClock(), []
    fns = {n: clock.path(log, n, [1.0] * 10) for n in "abc"}
    common.interleave(fns, rounds=4, warmup=1, calls={"a": 1, "b": 1, "c": 1},
                      wall_clock=lambda: clock.wall, cpu_clock=lambda: clock.cpu)
    assert log[:3] == ["a", "b", "c"]  # warm-up
    assert log[3:] == list("abc" "cba" "abc" "cba")


def test_median_min_max_and_cpu_from_samples():
    clock, log = FakeClock(), []
    fns = {"a": clock.path(log, "a", [9.0, 3.0, 1.0, 2.0, 7.0]), "b": clock.path(log, "b", [0.0, 4.0, 4.0, 4.0, 4.0])}
    t = common.interleave(fns, rounds=4, warmup=1, calls={"a": 1, "b": 1},
                          wall_clock=lambda: clock.wall, cpu_clock=lambda: clock.cpu)
    a = t["a"]
    assert a.wall == [3.0, 1.0, 2.0, 7.0]  # the warm-up's 9 s is not a sample
    assert (a.median, a.min, a.max) == (2.5, 1.0, 7.0)
    assert a.cpu == [1.5, 0.5, 1.0, 3.5] and a.cpu_median == 1.25
    assert t["b"].median == 4.0
    s = a.summary()
    assert s["median_s"] == 2.5 and s["min_s"] == 1.0 and s["max_s"] == 7.0 and s["calls_per_sample"] == 1
    assert common.ratio_text(t["b"], a) == "1.60x (0.57-4.00)"


def test_short_calls_are_averaged_and_rounds_continue():
    clock, log = FakeClock(), []
    fns = {"a": clock.path(log, "a", [0.01] * 100)}
    t = common.interleave(fns, rounds=2, warmup=1, min_sample=0.05, wall_clock=lambda: clock.wall,
                          cpu_clock=lambda: clock.cpu)
    assert t["a"].calls == 5 and len(log) == 1 + 2 * 5
    assert t["a"].wall == pytest.approx([0.01, 0.01])
    more = common.interleave(fns, rounds=1, warmup=0, timings=t, wall_clock=lambda: clock.wall,
                             cpu_clock=lambda: clock.cpu)
    assert len(more["a"].wall) == 3 and more["a"].calls == 5


def test_median_even_and_odd():
    assert common.median([3, 1, 2]) == 2
    assert common.median([4, 1, 3, 2]) == 2.5
    with pytest.raises(ValueError):
        common.median([])


def test_write_json_includes_protocol(tmp_path):
    out = common.write_json(tmp_path / "sub" / "r.json", {"rows": [1]})
    data = json.loads(out.read_text())
    assert data["rows"] == [1] and "alternating" in data["protocol"]
