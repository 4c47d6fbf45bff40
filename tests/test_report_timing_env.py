"""Timing (warm-up then median of repeats) and the environment record."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from rali_edge.errors import ConfigError
from rali_edge.report.environment import collect_environment, cpu_model, package_versions
from rali_edge.report.timing import measure_latency, time_callable


def test_warmup_calls_are_not_timed():
    calls = []

    def fn():
        calls.append(None)
        # the first (warm-up) call is slow, as a lazy init would be
        time.sleep(0.05 if len(calls) == 1 else 0.001)

    t = time_callable(fn, batch=4, warmup=1, repeats=3)
    assert len(calls) == 4
    assert t.repeats == 3
    assert t.median_s < 0.04
    assert t.ms_per_img == pytest.approx(1000 * t.median_s / 4)
    assert t.img_per_s == pytest.approx(4 / t.median_s)


def test_median_not_mean():
    seq = iter([0.001, 0.001, 0.03, 0.001, 0.001])

    t = time_callable(lambda: time.sleep(next(seq)), batch=1, warmup=0, repeats=5)
    assert t.median_s < 0.02 < max(t.times_s)


def test_measure_latency_builds_both_batches():
    sizes = []
    lat = measure_latency(lambda x: sizes.append(x), lambda b: b, batch=8, warmup=1, repeats=2)
    assert sizes == [1, 1, 1, 8, 8, 8]
    assert lat.batch1.batch == 1 and lat.batch_n.batch == 8
    assert set(lat.to_dict()) == {"batch1", "batch_n"}


@pytest.mark.parametrize("kwargs", [{"batch": 0}, {"batch": 1, "repeats": 0}, {"batch": 1, "warmup": -1}])
def test_bad_settings_rejected(kwargs):
    with pytest.raises(ConfigError):
        time_callable(lambda: None, **kwargs)


def test_environment_has_versions_cpu_threads_date():
    env = collect_environment(threads=2)
    assert env["threads"] == 2
    assert env["cpu_model"] and env["cpu_model"] == cpu_model()
    for pkg in ("torch", "onnxruntime", "coremltools"):
        assert pkg in env["versions"]
    assert env["versions"]["onnxruntime"]  # installed in this project's environment
    assert dt.datetime.fromisoformat(env["date"]).tzinfo is not None
    assert env["usable_cpus"] >= 1


def test_absent_package_is_none():
    assert package_versions(("surely-not-installed-pkg-xyz",)) == {"surely-not-installed-pkg-xyz": None}
