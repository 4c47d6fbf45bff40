"""Run one artifact (or the float bundle) on the eval sets, the same way for every command.

Order of decisions for an artifact: the format table's runner can run here -> run it in its own
runtime ("ok"); it cannot, and the format has a simulator -> simulate ("simulated"); else "not
runnable here" with the reason. Any rali-edge error while loading or running -> "failed".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rali_edge.errors import ConfigError, NotRunnableHere, RaliEdgeError
from rali_edge.report.drift import FAILED, NOT_RUNNABLE, OK, REFERENCE, SIMULATED, DriftRow

if TYPE_CHECKING:
    from rali_edge.evaluation.evalset import EvalSet
    from rali_edge.report.bootstrap import PairedBootstrap
    from rali_edge.runtime.base import Runner

DEFAULT_BATCH_SIZE = 16


@dataclass
class Measurement:
    """What running one artifact on every eval set gave."""

    artifact: Path
    status: str                     # report.drift: OK, REFERENCE, SIMULATED, NOT_RUNNABLE or FAILED
    outputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)   # dataset -> outputs
    reason: str = ""                # why not OK (or what was simulated)
    runner: Runner | None = None    # the open runner when it ran here (for timing)
    _bootstraps: dict[str, PairedBootstrap] = field(default_factory=dict, init=False, repr=False, compare=False)

    def scores(self, dataset: str) -> np.ndarray:
        return np.asarray(self.outputs[dataset]["score"], np.float64)

    def bootstrap(self, s: EvalSet) -> PairedBootstrap | None:
        """As the reference: its PairedBootstrap on `s`, drawn on first use and then shared by every artifact
        compared with it; None where no interval can be drawn (no ground truth, fewer than 3 images)."""
        from rali_edge.report.bootstrap import PairedBootstrap

        if s.gt is None or s.gt.size < 3:
            return None
        if s.dataset not in self._bootstraps:
            self._bootstraps[s.dataset] = PairedBootstrap(self.scores(s.dataset), s.gt)
        return self._bootstraps[s.dataset]


def open_runner_for(path: Path, threads: int | None = None, **kwargs) -> Runner:
    """The artifact's runner, with `threads` intra-op threads where its runtime takes a thread count;
    `kwargs` go to the runner as they are (`device` for a bundle)."""
    from rali_edge.runtime import runner_class

    cls = runner_class(path)
    if threads is not None and cls.takes_threads:
        kwargs["threads"] = threads
    return cls(path, **kwargs)


def run_batched(runner: Runner, pixels: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE) -> dict[str, np.ndarray]:
    """Run `pixels` through `runner` in chunks of `batch_size` (the same chunks for every command)."""
    from tqdm.auto import tqdm

    parts: dict[str, list[np.ndarray]] = {}
    for i in tqdm(range(0, len(pixels), batch_size), desc=f"running {Path(str(runner.path)).name}",
                  unit="batch", leave=False):
        for k, v in runner.run(pixels[i:i + batch_size]).items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def measure_reference(bundle_dir: Path, sets: list[EvalSet], batch_size: int = DEFAULT_BATCH_SIZE,
                      threads: int | None = None) -> Measurement:
    """The float PyTorch bundle on every set: the reference every artifact is compared with."""
    runner = open_runner_for(bundle_dir, threads)
    outputs = {s.dataset: run_batched(runner, s.pixels, batch_size) for s in sets}
    return Measurement(bundle_dir, REFERENCE, outputs, runner=runner)


def measure_artifact(path: Path, bundle_dir: Path | None, sets: list[EvalSet],
                     batch_size: int = DEFAULT_BATCH_SIZE, threads: int | None = None) -> Measurement:
    """Run (or simulate, or explain why not) one artifact on every eval set."""
    from rali_edge.export.formats import format_for_suffix, load_object
    from rali_edge.runtime import runner_class

    path = Path(path)
    try:
        ok, why = runner_class(path).available()
        if not ok:
            fmt = format_for_suffix(path.suffix)
            if fmt is None or fmt.simulator is None or bundle_dir is None:
                return Measurement(path, NOT_RUNNABLE, reason=why)
            try:
                outputs, what = load_object(fmt.simulator)(path, bundle_dir, {s.dataset: s.pixels for s in sets},
                                                           batch_size)
            except NotRunnableHere as exc:
                return Measurement(path, NOT_RUNNABLE, reason=f"{why}; {exc}")
            return Measurement(path, SIMULATED, outputs, reason=f"{why}: simulated in PyTorch ({what})")
        runner = open_runner_for(path, threads)
        size = sets[0].pixels.shape[-1]
        if runner.image_size != size:
            raise ConfigError(f"{path}: takes {runner.image_size} px images but the eval sets are {size} px "
                              "(preprocessed as the bundle says)")
        outputs = {s.dataset: run_batched(runner, s.pixels, batch_size) for s in sets}
        return Measurement(path, OK, outputs, runner=runner)
    except NotRunnableHere as exc:
        return Measurement(path, NOT_RUNNABLE, reason=str(exc))
    except RaliEdgeError as exc:
        return Measurement(path, FAILED, reason=str(exc))


def drift_rows(m: Measurement, sets: list[EvalSet], reference: Measurement, name: str | None = None) -> list[DriftRow]:
    """One DriftRow per eval set: drift vs the reference, or why there is none. Non-finite scores fail."""
    from rali_edge.report.drift import drift_row, reference_row, unmeasured_row

    name = name or m.artifact.name
    rows = []
    for s in sets:
        if m.status not in (OK, SIMULATED, REFERENCE):
            rows.append(unmeasured_row(name, s.dataset, len(s), m.status, m.reason))
        elif not np.all(np.isfinite(m.outputs[s.dataset]["score"])):
            rows.append(unmeasured_row(name, s.dataset, len(s), FAILED, "non-finite scores"))
        elif m.status == REFERENCE:
            rows.append(reference_row(name, s.dataset, s.gt, m.outputs[s.dataset]))
        else:
            reason = m.reason if m.status == SIMULATED else None
            rows.append(drift_row(name, s.dataset, s.gt, reference.outputs[s.dataset], m.outputs[s.dataset],
                                  m.status, reason, boot=reference.bootstrap(s)))
    return rows
