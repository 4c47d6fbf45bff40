"""Core ML quantization: INT8 weights (works on Linux) and W8A8 (activation calibration: macOS only).

`linear_quantize_weights` rewrites the saved mlprogram's constant weights to int8 (linear symmetric,
per output channel); compute stays FP16. Activation quantization (`linear_quantize_activations`) runs
the model's `predict` on calibration data, which Core ML only offers on macOS, so W8A8 is rejected
elsewhere with that reason.

Accuracy on Linux is SIMULATED, because Core ML cannot predict here: `simulate_weight_quantization`
applies the same per-channel symmetric int8 rounding to the folded PyTorch module's Linear/Conv/attention
weights (dequantized back to float), and `run_simulated` runs it in float16 on the CPU (torch's CPU
float16 kernels; LayerNorm and softmax also in float16, like the Neural Engine). Reports label it
"simulated"; a real measurement needs macOS.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rali_edge._atomic import atomic_path
from rali_edge.errors import ExportError, NotRunnableHere
from rali_edge.quantize.config import CoreMLW8A8Config, CoreMLWeightsConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

    from rali_edge.calibration.sets import CalibrationSet


def _load(source: Path):
    import coremltools as ct

    # skip_model_load: the spec and weights are all we need, and loading for prediction fails off macOS.
    return ct.models.MLModel(str(source), skip_model_load=sys.platform != "darwin")


def _op_config(config: CoreMLWeightsConfig):
    from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig

    op = OpLinearQuantizerConfig(mode=config.mode, dtype="int8", granularity=config.granularity,
                                 weight_threshold=config.weight_threshold)
    return OptimizationConfig(global_config=op)


def _save(mlmodel, out: Path, precision: str) -> None:
    mlmodel.user_defined_metadata["rali_edge.precision"] = precision
    with atomic_path(out) as tmp:
        mlmodel.save(str(tmp))


def quantize_coreml_weights(config: CoreMLWeightsConfig, source: Path, out: Path) -> dict:
    from coremltools.optimize.coreml import linear_quantize_weights

    mlmodel = _load(source)
    try:
        quantized = linear_quantize_weights(mlmodel, _op_config(config))
    except Exception as exc:  # noqa: BLE001 - coremltools raises many types; re-raised with context
        raise ExportError(f"{source}: linear_quantize_weights failed ({type(exc).__name__}: {exc})") from exc
    _save(quantized, out, "int8-weights")
    return {"mode": config.mode, "granularity": config.granularity, "weights": "int8", "compute": "fp16",
            "accuracy_on_linux": "simulated"}


def quantize_coreml_w8a8(config: CoreMLW8A8Config, source: Path, out: Path, calibration: CalibrationSet) -> dict:
    if sys.platform != "darwin":
        raise NotRunnableHere(
            "Core ML W8A8 needs activation calibration, which runs MLModel.predict on sample data and "
            f"Core ML can only predict on macOS (this is {sys.platform}); use CoreMLWeightsConfig "
            "(INT8 weights, FP16 compute) here, or run this on a Mac")
    from coremltools.optimize.coreml import linear_quantize_weights
    from coremltools.optimize.coreml.experimental import OpActivationLinearQuantizerConfig, linear_quantize_activations
    from coremltools.optimize.coreml import OptimizationConfig
    from PIL import Image

    mlmodel = _load(source)
    name = mlmodel.get_spec().description.input[0].name
    # The ImageType input takes 8-bit RGB images, one per prediction.
    samples = [{name: Image.fromarray(img.transpose(1, 2, 0), "RGB")} for img in calibration.pixels]
    act = OptimizationConfig(global_config=OpActivationLinearQuantizerConfig(mode="linear_symmetric"))
    try:
        with_acts = linear_quantize_activations(mlmodel, act, sample_data=samples)
        quantized = linear_quantize_weights(with_acts, _op_config(config.weights))
    except Exception as exc:  # noqa: BLE001 - coremltools raises many types; re-raised with context
        raise ExportError(f"{source}: Core ML W8A8 quantization failed ({type(exc).__name__}: {exc})") from exc
    _save(quantized, out, "int8")
    return {"weights": "int8", "activations": "int8", "calibration_images": len(calibration)}


# ---------------------------------------------------------------- simulation on Linux


def quantize_weight_per_channel(w: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 per output channel (axis 0), dequantized: round(w / s) * s, s = max|w| / 127."""
    import torch

    flat = w.detach().reshape(w.shape[0], -1).float()
    scale = flat.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    q = torch.clamp(torch.round(flat / scale[:, None]), -127, 127)
    return (q * scale[:, None]).reshape(w.shape).to(w.dtype)


def simulate_weight_quantization(module: nn.Module, config: CoreMLWeightsConfig) -> list[str]:
    """In place: int8-round every Linear/Conv weight and attention in_proj weight >= the size threshold.

    Per-tensor granularity uses one scale for the whole tensor. Returns the names of the weights touched.
    """
    import torch
    from torch import nn

    touched = []
    with torch.no_grad():
        for mod_name, mod in module.named_modules():
            params = []
            if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                params.append(("weight", mod.weight))
            if isinstance(mod, nn.MultiheadAttention) and mod.in_proj_weight is not None:
                params.append(("in_proj_weight", mod.in_proj_weight))
            for pname, p in params:
                if p.numel() < config.weight_threshold:
                    continue
                if config.granularity == "per_channel":
                    p.copy_(quantize_weight_per_channel(p))
                else:
                    p.copy_(quantize_weight_per_channel(p.reshape(1, -1)).reshape(p.shape))
                touched.append(f"{mod_name}.{pname}")
    return touched


def run_simulated(module: nn.Module, pixels: np.ndarray, input_kind: str, batch_size: int = 16) -> dict[str, np.ndarray]:
    """Run the folded module in float16 on the CPU on uint8 pixels; outputs back in float32."""
    import torch

    half = module.half().eval()
    outs: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for i in range(0, len(pixels), batch_size):
            x = torch.from_numpy(pixels[i:i + batch_size])
            x = x.half() if input_kind == "uint8" else (x.float() / 255.0).half()
            res = half(x)
            res = res if isinstance(res, tuple) else (res,)
            for name, value in zip(("score", "embedding"), res):
                outs.setdefault(name, []).append(value.float().numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}
