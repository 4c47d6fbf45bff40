"""The scorer and its artifacts for bench_int8.py: one FP32 and one INT8 artifact per runtime, each made
by the project's own code (`export_bundle`, `quantize`) and run by its own runner.

- `b16`: open_clip ViT-B-16 (QuickGELU, like CLIP) at 224 px with a 512-d PCA / 250-basis head, RANDOM
  weights (real size and graph: the speed does not depend on the weights);
- `tiny`: `rali_edge.model.tiny`'s random scorer (32 px), to check the script in seconds.

Exports are cached in the work folder under names that carry the variant (and, for INT8 made here, a
hash of the quantization config), so a changed config never reuses an old file; delete the folder
after changing the exporter itself. Calibration uses random pixels: enough to time a graph, not to
judge accuracy (the quantize and drift tests do that on a trained scorer).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# The runtimes bench_int8 can time, and the format of rali_edge's table each one runs.
RUNTIME_FORMATS = {"ort": "onnx", "openvino": "openvino", "litert": "litert", "executorch": "executorch"}
B16_IMAGE_SIZE = 224


@dataclass(frozen=True)
class Variant:
    name: str          # "ort-int8", "litert-fp32", or an experiment's name
    runtime: str       # a key of RUNTIME_FORMATS
    precision: str     # "fp32" or "int8"
    path: Path
    # ONNX Runtime session config entries (experiments only); empty = the project's own runner
    session_config: tuple[tuple[str, str], ...] = field(default=())

    @property
    def megabytes(self) -> float:
        files = self.path.rglob("*") if self.path.is_dir() else [self.path]
        return sum(f.stat().st_size for f in files if f.is_file()) / 2**20


def build_bundle(model: str, workdir: Path) -> Path:
    out = workdir / f"{model}-random-bundle"
    if (out / "config.json").is_file():
        return out
    if model == "tiny":
        from rali_edge.model.tiny import make_random_bundle

        return make_random_bundle(out)
    return _b16_bundle(out)


def _b16_bundle(out: Path) -> Path:
    import open_clip
    import torch

    from rali_edge.bundle import CLIP_MEAN, CLIP_STD, Provenance
    from rali_edge.model.backbone import build_backbone, open_clip_backbone_config
    from rali_edge.model.scorer import RaliScorer
    from rali_edge.model.tiny import random_head

    model_cfg = dict(open_clip.get_model_config("ViT-B-16"), quick_gelu=True)
    pcfg = {"size": B16_IMAGE_SIZE, "mean": list(CLIP_MEAN), "std": list(CLIP_STD), "interpolation": "bicubic",
            "resize_mode": "shortest"}
    cfg = open_clip_backbone_config("ViT-B-16", None, model_cfg, pcfg)
    torch.manual_seed(0)
    backbone = build_backbone(cfg)
    head = random_head(cfg.embed_dim, 512, 250, torch.Generator().manual_seed(0))
    scorer = RaliScorer(backbone, head).eval()
    prov = Provenance.now(seeds=[0], notes={"random_weights": True, "made_by": "benchmarks/bench_int8.py"})
    return scorer.save(out, backbone.default_preprocess(), prov)


def image_size(bundle: Path) -> int:
    from rali_edge.bundle import load_bundle

    return load_bundle(bundle).config.preprocess.image_size


def random_calibration(bundle: Path, count: int):
    from rali_edge.calibration import from_pixels

    size = image_size(bundle)
    pixels = np.random.default_rng(0).integers(0, 256, (count, 3, size, size), dtype=np.uint8)
    return from_pixels(pixels, "random uint8 pixels (benchmark only)", seed=0)


def ort_fp32(bundle: Path, workdir: Path) -> Path:
    """The default ONNX export, as `rali-edge export --format onnx` writes it."""
    from rali_edge.export.api import export_bundle

    target = workdir / f"{bundle.name}-onnx-fp32.onnx"
    if not target.is_file():
        export_bundle(bundle, "onnx", "fp32", out_dir=workdir, name=target.stem)
    return target


def ort_int8(fp32: Path, workdir: Path, calibration, config=None, tag: str = "int8") -> Path:
    """`quantize(config, fp32)` (default: the default OnnxInt8Config), as `rali-edge quantize` runs it."""
    from rali_edge.quantize import OnnxInt8Config, config_to_dict, quantize

    config = config or OnnxInt8Config()
    digest = hashlib.sha256(json.dumps(config_to_dict(config), sort_keys=True).encode()).hexdigest()[:8]
    target = workdir / f"{fp32.stem}-{tag}-{digest}.onnx"
    if not target.is_file():
        quantize(config, fp32, target, calibration)
    return target


def runtime_variants(runtime: str, bundle: Path, workdir: Path, calibration) -> tuple[list[Variant], str]:
    """(FP32 + INT8 variants of `runtime`, "") or ([], why it cannot run here)."""
    from rali_edge.export.formats import FORMATS

    fmt = RUNTIME_FORMATS[runtime]
    if fmt not in FORMATS:
        return [], f"rali_edge has no {fmt!r} export format"
    ok, why = FORMATS[fmt].runnable_here()
    if not ok:
        return [], why
    if runtime == "ort":
        fp32 = ort_fp32(bundle, workdir)
        return [Variant("ort-fp32", "ort", "fp32", fp32),
                Variant("ort-int8", "ort", "int8", ort_int8(fp32, workdir, calibration))], ""
    return [Variant(f"{runtime}-{p}", runtime, p, _export(bundle, fmt, p, workdir, calibration))
            for p in ("fp32", "int8")], ""


def _export(bundle: Path, fmt: str, precision: str, workdir: Path, calibration) -> Path:
    from rali_edge.export.api import export_bundle
    from rali_edge.export.formats import caps

    c = caps(fmt)
    target = workdir / f"{bundle.name}-{fmt}-{precision}{c.suffix}"
    if not target.exists():
        quantized = c.is_quantized(precision)
        # fixed-batch formats (LiteRT) are exported at batch 1, as an app runs them: batch 8 is then eight
        # invocations (the runner chunks), which is what such an app would do too. Random weights:
        # report the score change, do not gate on it.
        export_bundle(bundle, fmt, precision, batch=None if c.dynamic_batch else 1, out_dir=workdir,
                      name=target.stem, calibration=calibration if quantized else None, value_check=False)
    return target


def open_variant(v: Variant, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 NCHW pixels -> scores: the project's runner, or an ORT session with the variant's config."""
    if not v.session_config:
        from rali_edge.evaluation.measure import open_runner_for

        runner = open_runner_for(v.path, threads)
        return lambda pixels: runner.run(pixels)["score"]
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    for key, value in v.session_config:
        opts.add_session_config_entry(key, value)
    sess = ort.InferenceSession(str(v.path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda pixels: sess.run(["score"], {name: pixels})[0]


def score_change(run: Callable[[np.ndarray], np.ndarray], reference: np.ndarray, pixels: np.ndarray) -> float:
    """Max |score - float PyTorch score| on the sample photographs every export is checked on."""
    return float(np.max(np.abs(run(pixels) - reference)))


def reference_scores(bundle: Path) -> tuple[np.ndarray, np.ndarray]:
    """(sample pixels, the float PyTorch bundle's scores on them)."""
    from rali_edge.bundle import load_bundle
    from rali_edge.export.samples import sample_pixels
    from rali_edge.runtime import open_runner

    pixels = sample_pixels(load_bundle(bundle).config.preprocess)
    return pixels, open_runner(bundle).run(pixels)["score"]
