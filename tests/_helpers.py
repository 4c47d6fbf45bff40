"""Plain helpers shared by several test modules; not a test module, and no test module imports it.

tests/conftest.py loads this file by path and hands each helper to the tests as a session fixture of
the same name (`make_scorer`, `export_onnx`, `perturbed_copy`, `sample_rows`, `official_scores`, ...),
and builds the `scorer_case` / `int8_case` fixtures with `build_scorer_case` / `build_int8_case`.

Quantize/calibration/validate tests: a tiny folded CLIP scorer and its ONNX. The folded module mirrors
the graph the exporter (rali_edge/export) produces: uint8 pixels -> Cast -> normalise -> open_clip ViT
-> LayerNorm -> projection -> PCA affine -> L2 normalise -> MatMul with the basis (1/tau folded) ->
Softmax -> MatMul with the scores -> score. Random weights; the head is fitted on synthetic data by
`fit_head_on` so the scores mean something and drift can be measured.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from rali_edge.report.table import BenchmarkRow, Status

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class FoldedScorer(nn.Module):
    """uint8 [B,3,H,W] -> score [B] (and optionally the embedding), like the exporter's folded model."""

    def __init__(self, visual: nn.Module, embed_dim: int, pca_dim: int = 8, num_basis: int = 6, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.visual = visual
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1) * 255.0)
        self.pca_mean = nn.Parameter(torch.zeros(embed_dim))
        self.pca_components = nn.Parameter(torch.randn(pca_dim, embed_dim, generator=g) / embed_dim**0.5)
        self.prototypes = nn.Parameter(torch.randn(num_basis, pca_dim, generator=g))
        self.proto_scores = nn.Parameter(torch.linspace(1.0, 5.0, num_basis).view(num_basis, 1))
        self.logit_scale = nn.Parameter(torch.tensor(1 / 0.07))
        self.with_embedding = False

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels.float() - self.mean) / self.std
        return self.visual(x)

    def head(self, feats: torch.Tensor) -> torch.Tensor:
        x = (feats - self.pca_mean) @ self.pca_components.T
        x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        p = self.prototypes / self.prototypes.norm(dim=-1, keepdim=True)
        w = torch.softmax(x @ (p.T * self.logit_scale), dim=-1)
        return (w @ self.proto_scores).squeeze(-1)

    def forward(self, pixels: torch.Tensor):
        feats = self.embed(pixels)
        score = self.head(feats)
        return (score, feats) if self.with_embedding else score


def tiny_visual(width: int = 32, layers: int = 2, image_size: int = 32, patch: int = 8, embed_dim: int = 16,
                quick_gelu: bool = True) -> nn.Module:
    from open_clip.model import CLIPVisionCfg, _build_vision_tower

    cfg = CLIPVisionCfg(layers=layers, width=width, head_width=16, patch_size=patch, image_size=image_size)
    return _build_vision_tower(embed_dim, cfg, quick_gelu=quick_gelu)


def make_scorer(seed: int = 0, quick_gelu: bool = True, **kw) -> FoldedScorer:
    torch.manual_seed(seed)
    embed_dim = kw.pop("embed_dim", 16)
    scorer = FoldedScorer(tiny_visual(embed_dim=embed_dim, quick_gelu=quick_gelu, **kw), embed_dim, seed=seed)
    return scorer.eval()


def fit_head_on(scorer: FoldedScorer, pixels: np.ndarray, target: np.ndarray, steps: int = 300) -> FoldedScorer:
    """Fit the head (PCA, basis, scores, temperature) on `pixels` -> `target` so scores track the labels."""
    with torch.no_grad():
        feats = scorer.embed(torch.from_numpy(pixels))
        scorer.pca_mean.copy_(feats.mean(0))
    y = torch.from_numpy(target).float()
    params = [scorer.pca_components, scorer.prototypes, scorer.proto_scores, scorer.logit_scale]
    opt = torch.optim.Adam(params, lr=3e-2)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((scorer.head(feats) - y) ** 2).mean()
        loss.backward()
        opt.step()
    return scorer.eval()


def synthetic_pixels(n: int, image_size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images whose 'quality' (a score in [1, 5]) is how little noise and blur they carry."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:image_size, 0:image_size] / image_size
    imgs, scores = [], []
    for _ in range(n):
        q = rng.uniform(0, 1)
        base = np.stack([np.sin(6 * xx + rng.uniform(0, 6)), np.cos(5 * yy + rng.uniform(0, 6)), xx * yy])
        base = (base - base.min()) / (np.ptp(base) + 1e-6)
        noisy = base + (1 - q) * rng.normal(0, 0.5, base.shape)
        imgs.append(np.clip(noisy * 255, 0, 255).astype(np.uint8))
        scores.append(1 + 4 * q)
    return np.stack(imgs), np.asarray(scores, dtype=np.float32)


def export_onnx(scorer: FoldedScorer, path: Path, dynamo: bool, image_size: int = 32,
                with_embedding: bool = False) -> Path:
    scorer.with_embedding = with_embedding
    example = torch.randint(0, 256, (2, 3, image_size, image_size), dtype=torch.uint8)
    names = ["score", "embedding"] if with_embedding else ["score"]
    kwargs = dict(input_names=["pixels"], output_names=names, opset_version=18)
    if dynamo:
        batch = torch.export.Dim("batch", min=1, max=1024)
        torch.onnx.export(scorer, (example,), str(path), dynamo=True, external_data=False,
                          dynamic_shapes={"pixels": {0: batch}}, **kwargs)
    else:
        axes = {n: {0: "batch"} for n in ["pixels", *names]}
        torch.onnx.export(scorer, (example,), str(path), dynamo=False, dynamic_axes=axes, **kwargs)
    scorer.with_embedding = False
    return path


def rename_all_nodes(path: Path, out: Path, seed: int = 0) -> Path:
    """Give every node a random name so tests prove the pattern finder ignores names."""
    import onnx

    rng = np.random.default_rng(seed)
    model = onnx.load(str(path))
    for node in model.graph.node:
        node.name = "n" + "".join(rng.choice(list("abcdefghijklmnop"), 12))
    onnx.save(model, str(out))
    return out


# ---------------------------------------------------------------- project pipeline: bundle + export


def write_dataset(root: Path, n: int, name: str, seed: int, image_size: int = 32) -> Path:
    """PNG images + a meta JSON (image, gt_score, gt_score_norm) under root; returns the meta path."""
    import json

    from PIL import Image

    pixels, scores = synthetic_pixels(n, image_size, seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    items = []
    for i, (img, s) in enumerate(zip(pixels, scores)):
        rel = f"images/{name}_{i:04d}.png"
        Image.fromarray(img.transpose(1, 2, 0)).save(root / rel)
        items.append({"image": rel, "gt_score": float(s), "gt_score_norm": float(s)})
    meta = root / f"{name}.json"
    meta.write_text(json.dumps(items))
    return meta


def trained_bundle(out_dir: Path, train_pixels: np.ndarray, train_scores: np.ndarray, seed: int = 0,
                   pca_dim: int = 8, num_basis: int = 16, steps: int = 300) -> Path:
    """A tiny open_clip scorer (random ViT) whose head is fitted to synthetic labels, saved as a bundle."""
    from rali_edge.bundle import Provenance
    from rali_edge.model.preprocess import normalize
    from rali_edge.model.tiny import make_random_scorer

    scorer, pre = make_random_scorer("open_clip", pca_dim=pca_dim, num_basis=num_basis, seed=seed)
    head = scorer.head
    with torch.no_grad():
        feats = scorer.backbone.encode_image(normalize(torch.from_numpy(train_pixels), pre))
        head.pca_mean.copy_(feats.mean(0))
        _, _, v = torch.linalg.svd(feats - feats.mean(0), full_matrices=False)
        head.pca_components.copy_(v[:pca_dim])
    y = torch.from_numpy(train_scores).float()
    params = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=3e-2)
    for _ in range(steps):
        opt.zero_grad()
        ((head(feats) - y) ** 2).mean().backward()
        opt.step()
    prov = Provenance.now(seeds=[seed], notes={"random_weights": True, "head": "fitted on synthetic data (tests)"})
    return scorer.eval().save(out_dir, pre, prov)


def export_bundle_onnx(bundle: Path, out_dir: Path, with_embedding: bool = False) -> Path:
    from rali_edge.export.api import export_bundle

    return export_bundle(bundle, "onnx", precision="fp32", out_dir=out_dir, with_embedding=with_embedding).path


# ---------------------------------------------------------------- scorer_case / int8_case


def build_scorer_case(tmp_path_factory) -> dict:
    """(root, bundle, fp32 onnx with embedding, train meta, test meta): shared by the quantize tests."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("scorer_case")
    train_meta = write_dataset(root, 240, "train", seed=1)
    test_meta = write_dataset(root, 120, "test", seed=2)
    train_pixels, train_scores = synthetic_pixels(240, seed=1)
    bundle = trained_bundle(root / "bundle", train_pixels, train_scores)
    onnx_path = export_bundle_onnx(bundle, root / "exports", with_embedding=True)
    return {"root": root, "bundle": bundle, "onnx": onnx_path, "train": train_meta, "test": test_meta}


def build_int8_case(scorer_case) -> dict:
    """The scorer_case float ONNX quantized INT8 (cpu profile) with a calibration set from train.json."""
    import warnings

    from rali_edge.bundle import load_bundle
    from rali_edge.calibration import build_calibration_set
    from rali_edge.quantize import OnnxInt8Config, quantize

    root = scorer_case["root"]
    pre = load_bundle(scorer_case["bundle"]).config.preprocess
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 240 < 300 images: the small-set warning is expected here
        cal = build_calibration_set(scorer_case["train"], pre, size=240, seed=0, image_root=root,
                                    cache_dir=root / "cache")
    result = quantize(OnnxInt8Config(), scorer_case["onnx"], root / "exports" / "int8.onnx", cal)
    return {**scorer_case, "calibration": cal, "int8": result}


def perturbed_copy(source: Path, out: Path) -> Path:
    """A copy of a float ONNX whose basis scores are reversed: good images score low (a broken artifact)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    flipped = 0
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.ndim == 2 and arr.shape[1] == 1 and arr.shape[0] > 1:  # the [K, 1] proto scores
            init.CopyFrom(numpy_helper.from_array(arr[::-1].copy(), init.name))
            flipped += 1
    assert flipped == 1, "expected exactly one [K, 1] score vector in the graph"
    onnx.save(model, str(out))
    return out


# ---------------------------------------------------------------- model head (official formula)


def official_scores(feats, pca_mean, pca_scale, comps, protos, proto_scores, logit_scale):
    """Step by step as in the released inference code, in float64 numpy."""
    x = ((feats - pca_mean) / np.abs(pca_scale)) @ comps.T
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    p = protos / np.maximum(np.linalg.norm(protos, axis=1, keepdims=True), 1e-12)
    sim = x @ p.T
    tau = 1.0 / max(logit_scale, 1e-6)
    z = sim / tau
    w = np.exp(z - z.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    return w @ proto_scores


# ---------------------------------------------------------------- report table rows


def sample_rows() -> list[BenchmarkRow]:
    """One BenchmarkRow per kind of status, with and without numbers (the report table and render tests)."""
    rng = np.random.default_rng(0)
    scores = rng.uniform(1, 5, 12)
    return [
        BenchmarkRow("pytorch", "fp32", Status.OK, size_mb=1.5, plcc=0.91, srcc=0.9, dplcc=0.0, dsrcc=0.0,
                     ms_per_img=3.2, img_per_s=410.0, scores=scores),
        BenchmarkRow("onnx", "int8-cpu", Status.VALIDATION_FAILED, reason="dPLCC -0.0600 < -0.0200",
                     size_mb=0.4, plcc=0.85, srcc=0.84, dplcc=-0.06, dsrcc=-0.06, ms_per_img=1.1, img_per_s=900.0,
                     scores=scores + 0.1),
        BenchmarkRow("ort", "fp32", Status.EXPORT_FAILED, reason="opset 18 unsupported by the mobile converter"),
        BenchmarkRow("tensorrt", "fp16", Status.NOT_RUNNABLE, reason="TensorRT needs a CUDA GPU + TensorRT"),
        BenchmarkRow("coreml", "fp16", Status.SIMULATED, reason="accuracy from simulated FP16", size_mb=0.8,
                     plcc=0.91, srcc=0.9, dplcc=-0.0001, dsrcc=0.0,
                     timing_reason="Core ML prediction needs macOS", scores=scores + 0.001),
    ]


# ---------------------------------------------------------------- photo case (on-device runtimes)


def build_photo_case(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(bundle, meta, image folder): a random-weight open_clip scorer and 12 labelled photo crops."""
    import json

    from PIL import Image

    from rali_edge.export.samples import sample_crops
    from rali_edge.model.tiny import make_random_bundle

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("photo_case")
    bundle = make_random_bundle(root / "bundle")
    img_dir = root / "img"
    img_dir.mkdir()
    items = []
    for i, arr in enumerate(sample_crops(12, 48, seed=1)):
        Image.fromarray(arr).save(img_dir / f"{i}.png")
        items.append({"image": f"{i}.png", "gt_score_norm": 1.0 + 4.0 * i / 11})
    meta = root / "photos.json"
    meta.write_text(json.dumps(items))
    return bundle, meta, img_dir
