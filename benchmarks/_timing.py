"""Interleaved timing: every rep runs every model at every batch size and every GEMM once more, so load
drifts on a shared machine hit all of them alike and their ratios stay meaningful."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Hashable

from tqdm.auto import tqdm


def load_average() -> tuple[float, float, float] | None:
    """1/5/15-minute load average: on a shared 2-core machine every timing is only as good as this."""
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def _seconds(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def time_interleaved(models: dict[Hashable, Callable[[], object]], gemms: dict[Hashable, Callable[[], object]],
                     reps: int, gemm_inner: int = 3) -> tuple[dict[Hashable, float], dict[Hashable, float]]:
    """(median, least) seconds per key over `reps` rounds, after one warm-up run of everything.

    The least time is what a round undisturbed by other processes gives; the median is the usual
    figure. Models run once per round. GEMMs run `gemm_inner` times per round and keep the fastest: a peak is
    what the kernel can do, and a single short call is easily hit by another process's time slice.
    """
    for fn in (*models.values(), *gemms.values()):
        fn()
    samples: dict[Hashable, list[float]] = {k: [] for k in (*models, *gemms)}
    order = list(models)
    for rep in tqdm(range(reps), desc="timing", unit="rep", leave=False):
        # a different model first each round: no model always follows the same one (caches, clocks)
        for key in order[rep % len(order):] + order[:rep % len(order)]:
            samples[key].append(_seconds(models[key]))
        for key, fn in gemms.items():
            samples[key].append(min(_seconds(fn) for _ in range(gemm_inner)))
    return ({k: statistics.median(v) for k, v in samples.items()}, {k: min(v) for k, v in samples.items()})
