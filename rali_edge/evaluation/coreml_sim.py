"""Core ML accuracy off macOS: the same folded graph, fed the artifact's own input kind, run in
PyTorch in float16 (and, for INT8-weight packages, with the same weight rounding first)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rali_edge.errors import NotRunnableHere


def simulate_coreml(path: Path, bundle_dir: Path, pixels: dict[str, np.ndarray],
                    batch_size: int) -> tuple[dict[str, dict[str, np.ndarray]], str]:
    """(outputs per dataset, what was simulated), or NotRunnableHere saying why it cannot be."""
    from rali_edge.bundle import load_bundle
    from rali_edge.export.fold import fold_scorer
    from rali_edge.export.spec import ExportSpec
    from rali_edge.model.scorer import RaliScorer
    from rali_edge.quantize.api import quant_json_path
    from rali_edge.quantize.config import CoreMLWeightsConfig, config_from_dict
    from rali_edge.quantize.coreml import run_simulated, simulate_weight_quantization
    from rali_edge.runtime.coreml_runner import CoreMLRunner

    meta = CoreMLRunner(path).metadata
    qjson = quant_json_path(path)
    config = config_from_dict(json.loads(qjson.read_text())["config"]) if qjson.is_file() else None
    if meta.precision not in ("fp16", "int8-weights"):
        raise NotRunnableHere(f"Core ML {meta.precision} cannot be simulated here (only FP16 and INT8-weight packages)")
    if meta.precision == "int8-weights" and not isinstance(config, CoreMLWeightsConfig):
        raise NotRunnableHere(f"INT8-weight package without its {qjson.name} (needed to simulate the same quantization)")
    bundle = load_bundle(bundle_dir)
    pre = bundle.config.preprocess
    # The package's graph takes its own input kind (Core ML's ImageType hands it [0, 1] floats).
    spec = ExportSpec(image_size=pre.image_size, input_kind=meta.input_kind,
                      with_embedding="embedding" in meta.output_names)
    folded = fold_scorer(RaliScorer.from_bundle(bundle).eval(), pre, spec)
    what = "float16 compute"
    if meta.precision == "int8-weights":
        simulate_weight_quantization(folded, config)
        what = f"int8 {config.mode} {config.granularity} weights (dequantized) + float16 compute"
    outputs = {name: run_simulated(folded, px, meta.input_kind, batch_size) for name, px in pixels.items()}
    return outputs, what
