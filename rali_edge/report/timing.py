"""Latency measurement: warm-up runs, then the median of repeated runs, at batch 1 and batch N."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from rali_edge.errors import ConfigError


@dataclass(frozen=True)
class Timing:
    """Wall-clock times of one callable processing `batch` images per call."""

    batch: int
    warmup: int
    times_s: tuple[float, ...]   # one entry per timed repeat, in run order

    @property
    def repeats(self) -> int:
        return len(self.times_s)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    @property
    def ms_per_img(self) -> float:
        return 1000.0 * self.median_s / self.batch

    @property
    def img_per_s(self) -> float:
        return self.batch / self.median_s

    def to_dict(self) -> dict:
        return {
            "batch": self.batch,
            "warmup": self.warmup,
            "repeats": self.repeats,
            "median_s": self.median_s,
            "min_s": self.min_s,
            "ms_per_img": self.ms_per_img,
            "img_per_s": self.img_per_s,
            "times_s": list(self.times_s),
        }


def time_callable(fn: Callable[[], object], *, batch: int, warmup: int = 1, repeats: int = 5) -> Timing:
    """Call `fn` `warmup` times untimed (allocators, caches, lazy init), then `repeats` times timed."""
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ConfigError(f"warmup must be >= 0, got {warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return Timing(batch=batch, warmup=warmup, times_s=tuple(times))


@dataclass(frozen=True)
class Latency:
    """Batch-1 latency (ms/img) and batch-N throughput (img/s) of one artifact."""

    batch1: Timing
    batch_n: Timing

    @property
    def ms_per_img(self) -> float:
        return self.batch1.ms_per_img

    @property
    def img_per_s(self) -> float:
        return self.batch_n.img_per_s

    def to_dict(self) -> dict:
        return {"batch1": self.batch1.to_dict(), "batch_n": self.batch_n.to_dict()}


def measure_latency(
    run: Callable[[object], object],
    make_input: Callable[[int], object],
    *,
    batch: int = 8,
    warmup: int = 1,
    repeats: int = 5,
) -> Latency:
    """Time `run(make_input(1))` and `run(make_input(batch))`; inputs are built once, outside the timing."""
    one = make_input(1)
    many = make_input(batch)
    b1 = time_callable(lambda: run(one), batch=1, warmup=warmup, repeats=repeats)
    bn = time_callable(lambda: run(many), batch=batch, warmup=warmup, repeats=repeats)
    return Latency(batch1=b1, batch_n=bn)
