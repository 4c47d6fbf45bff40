"""Run `.pte` ExecuTorch programs with ExecuTorch's Python runtime (XNNPACK delegate, CPU).

The metadata is read from the program's own `rali_edge_metadata` method, or from the sidecar
`<artifact>.json` for programs without one. A dynamic batch axis is bounded (see
export.executorch_program): batches beyond the bound are run in chunks of it.

Threads: ExecuTorch has ONE threadpool per process, and its only Python setter
(`_unsafe_reset_threadpool`) replaces the pool, leaving methods loaded before with a stale pool
pointer. So a thread count applies to the whole process, every change is counted, and a runner
whose method predates the latest change loads its program again before running.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rali_edge.errors import ExportError
from rali_edge.export.executorch_program import executorch_available, read_program_metadata, sidecar_path
from rali_edge.export.metadata import read_metadata
from rali_edge.runtime.base import Runner

_POOL = {"generation": 0}   # bumped on every threadpool replacement


def _use_threads(threads: int) -> None:
    """Make the process-wide ExecuTorch threadpool `threads` wide (replacing it only when it differs)."""
    from executorch.extension.pybindings import portable_lib

    if portable_lib._threadpool_get_thread_count() != threads:
        portable_lib._unsafe_reset_threadpool(threads)
        _POOL["generation"] += 1


class ExecuTorchRunner(Runner):
    takes_threads = True

    def __init__(self, path: str | Path, threads: int | None = None):
        self._open(path, threads)
        self._load()
        self.metadata = read_metadata(self._props(), str(self.path))
        # The input's first size is the fixed batch, or the bound of a dynamic one.
        self.max_batch = int(self.program.metadata("forward").input_tensor_meta(0).sizes()[0])

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return executorch_available()

    def _load(self) -> None:
        from executorch.runtime import Runtime

        if self.threads is not None:
            _use_threads(self.threads)
        try:
            self.program = Runtime.get().load_program(self.path)
            self._method = self.program.load_method("forward")
        except (RuntimeError, ValueError, KeyError) as exc:  # status codes come back as RuntimeError
            raise ExportError(f"{self.path}: ExecuTorch cannot load it ({exc})") from exc
        self._generation = _POOL["generation"]

    def _props(self) -> dict[str, str]:
        props = read_program_metadata(self.program)
        if props is not None:
            return props
        side = sidecar_path(self.path)
        if not side.is_file():
            raise ExportError(f"{self.path}: not a rali-edge artifact (no metadata method and no {side.name})")
        try:
            return json.loads(side.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ExportError(f"{side}: not valid JSON ({exc})") from exc

    def _run_batch(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        if self.threads is not None:
            _use_threads(self.threads)
        if self._generation != _POOL["generation"]:
            self._load()
        parts = [self._execute(inputs[i:i + self.max_batch]) for i in range(0, len(inputs), self.max_batch)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _execute(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        try:
            outs = self._method.execute([torch.from_numpy(np.ascontiguousarray(inputs))])
        except RuntimeError as exc:
            raise ExportError(f"{self.path}: ExecuTorch failed to run a batch of {len(inputs)} ({exc})") from exc
        return {name: out.numpy() for name, out in zip(self.output_names, outs)}
