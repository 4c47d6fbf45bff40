"""Run `.engine` files (rali-edge JSON header + serialized engine) with TensorRT 10/11 on CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rali_edge.errors import ExportError, NotRunnableHere
from rali_edge.export.metadata import read_metadata
from rali_edge.export.tensorrt import read_engine_file, tensorrt_available
from rali_edge.runtime.base import Runner

# TensorRT I/O dtypes we produce -> torch dtype names.
_TORCH_DTYPES = {"UINT8": "uint8", "FLOAT": "float32", "HALF": "float16", "INT32": "int32"}


class TensorRTRunner(Runner):
    def __init__(self, path: str | Path):
        self.path = Path(path)
        props, engine_bytes = read_engine_file(self.path)
        self.metadata = read_metadata(props, str(self.path))
        self._engine_bytes = engine_bytes
        self._engine = None  # deserialised on first run: metadata reads need no GPU

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return tensorrt_available()

    def _load(self):
        import tensorrt as trt

        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(self._engine_bytes)
        if engine is None:
            raise ExportError(f"{self.path}: TensorRT could not deserialise the engine "
                              "(built for another GPU or TensorRT version?)")
        self._engine, self._context = engine, engine.create_execution_context()

    def _run_batch(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        if not torch.cuda.is_available():
            raise NotRunnableHere(f"{self.path}: no CUDA device")
        if self._engine is None:
            self._load()
        stream = torch.cuda.current_stream()
        x = torch.from_numpy(np.ascontiguousarray(inputs)).cuda()
        self._context.set_input_shape(self.metadata.input_name, tuple(x.shape))
        self._context.set_tensor_address(self.metadata.input_name, x.data_ptr())
        outs = {}
        for name in self.output_names:
            shape = tuple(self._context.get_tensor_shape(name))
            dtype = getattr(torch, _TORCH_DTYPES[self._engine.get_tensor_dtype(name).name])
            outs[name] = torch.empty(shape, dtype=dtype, device="cuda")
            self._context.set_tensor_address(name, outs[name].data_ptr())
        if not self._context.execute_async_v3(stream.cuda_stream):
            raise ExportError(f"{self.path}: TensorRT execution failed")
        stream.synchronize()
        return {k: v.float().cpu().numpy() for k, v in outs.items()}
