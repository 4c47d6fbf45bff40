"""Run `.openvino` artifacts (an OpenVINO IR folder: model.xml + model.bin) with OpenVINO on the CPU.

The inference precision comes from the artifact's own precision (its `rali_edge.precision`), never
from OpenVINO's default: on CPUs with bf16 (avx512_bf16, AMX) the CPU plugin's default
INFERENCE_PRECISION_HINT is bf16, which would silently change an FP32 or INT8 artifact's numbers
(the float parts of an INT8 graph too). So fp32, fp16 (FP16 weights, decompressed on the CPU) and
int8 run with f32; a bf16 artifact runs with bf16, and only where the CPU has it (NotRunnableHere
naming what is missing otherwise).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from rali_edge.errors import ExportError, NotRunnableHere
from rali_edge.export.metadata import read_metadata
from rali_edge.runtime.base import Runner

EXTRA = "pip install 'rali-edge[openvino]'"
DEVICE = "CPU"
# artifact precision -> INFERENCE_PRECISION_HINT (an explicit table: an unknown precision is an error)
INFERENCE_PRECISION = {"fp32": "f32", "fp16": "f32", "int8": "f32", "bf16": "bf16"}


def bf16_supported(core=None) -> tuple[bool, str]:
    """(True, "") when OpenVINO's CPU plugin computes in bf16 here, else (False, why not)."""
    import openvino as ov

    caps = (core or ov.Core()).get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")
    if "BF16" in caps:
        return True, ""
    return False, (f"this CPU has no bf16 compute (OpenVINO {DEVICE} capabilities: {', '.join(caps)}; "
                   "bf16 needs avx512_bf16 or AMX-BF16)")


class OpenVINORunner(Runner):
    """Compiles the IR once for the CPU; feeds the input by name and returns the outputs by name.

    threads: INFERENCE_NUM_THREADS (None: OpenVINO's default, every core). One stream, latency hint,
    like the other runners' single-session execution.
    """

    takes_threads = True

    def __init__(self, path: str | Path, threads: int | None = None):
        self._open(path, threads)
        import openvino as ov

        from rali_edge.export.openvino_ir import read_ir, read_props

        core = ov.Core()
        model = read_ir(core, self.path)
        self.metadata = read_metadata(read_props(model), str(self.path))
        self.inference_precision = _hint(self.path, self.metadata.precision)
        if self.inference_precision == "bf16":
            ok, why = bf16_supported(core)
            if not ok:
                raise NotRunnableHere(f"{self.path}: a bf16 artifact cannot run here: {why}")
        config = {"INFERENCE_PRECISION_HINT": self.inference_precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = core.compile_model(model, DEVICE, config)
        except RuntimeError as exc:   # OpenVINO reports every compile failure as RuntimeError
            raise ExportError(f"{self.path}: OpenVINO cannot compile it for the {DEVICE} ({exc})") from exc
        self._request = self.compiled.create_infer_request()
        self._outputs = self._output_ports()

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("openvino") is None:
            return False, f"openvino is not installed ({EXTRA})"
        return True, ""

    def _output_ports(self) -> dict:
        """The compiled model's output port for each output name of the metadata."""
        ports = {name: port for port in self.compiled.outputs for name in port.get_names()}
        missing = [n for n in self.metadata.output_names if n not in ports]
        if missing:
            raise ExportError(f"{self.path}: the model has no output named {', '.join(missing)} "
                              f"(outputs: {sorted(ports)})")
        return {name: ports[name] for name in self.metadata.output_names}

    def _run_batch(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        result = self._request.infer({self.metadata.input_name: inputs})
        # The request reuses its output buffers on the next call: copy them out.
        return {name: np.array(result[port], copy=True) for name, port in self._outputs.items()}


def _hint(path: Path, precision: str) -> str:
    try:
        return INFERENCE_PRECISION[precision]
    except KeyError:
        raise ExportError(f"{path}: unknown precision {precision!r} in its metadata "
                          f"(known: {', '.join(INFERENCE_PRECISION)})") from None
