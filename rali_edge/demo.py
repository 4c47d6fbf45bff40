"""The main job on its embedded default: the whole RALI chain on synthetic data, on the CPU.

Stages run in order; each writes its outputs under the demo folder and then a marker
`stages/<name>.json` (atomically, last), so an interrupted demo run again resumes after the last
finished stage. Nothing is downloaded: the data is synthesised from images that installed packages
ship, the CLIP and the Qwen2.5-VL teacher are tiny models built from configs with random weights.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rali_edge._atomic import atomic_write_json
from rali_edge.errors import ConfigError

STAGES = ("data", "texts", "teacher", "train", "evaluate", "benchmark")


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of everything the demo builds. `full()` is the default run, `quick()` the short one."""

    sources: int
    procedural: int  # extra dead-leaves training sources (rali_edge.data.procedural)
    train_only_crops: int  # crops of each train-only photograph (rali_edge.data.synth.TRAIN_ONLY_IMAGES)
    image_size: int
    text_seeds: tuple[int, ...]
    grpo_steps: int
    describe_images: int
    clip_image_size: int
    clip_tower: str  # a timm model name: the CLIP's image tower (rali_edge.model.tiny.tiny_timm_backbone_config)
    clip_embed_dim: int
    clip_text_width: int
    clip_text_layers: int
    align_steps: int
    align_batch: int
    align_lr: float
    align_temperature: float
    align_crop: int  # AlignConfig.random_crop
    align_full_fraction: float  # AlignConfig.full_input_fraction
    align_bf16: bool  # bf16 autocast where the CPU runs bf16 natively (`align_precision`), float32 elsewhere
    align_rank_weight: float  # AlignConfig.rank_weight
    pca_dim: int
    num_buckets: int
    num_basis: int
    fit_epochs: int
    formats: tuple[str, ...]
    calib_size: int
    bench_repeats: int
    # How an app might prepare the pixels instead of PIL bicubic (rali_edge.evaluation.device_preprocess).
    device_preprocess: tuple[str, ...] = ("bilinear-noaa", "jpeg90")
    seed: int = 0

    @classmethod
    def full(cls) -> DemoSettings:
        # The frozen text tower has random weights, so its embeddings carry quality only as far as a wide
        # random projection keeps the words apart: a 1-layer, 256-wide tower keeps far more of it than a
        # 2-layer, 32-wide one (ridge probe text embedding -> score PLCC 0.89 vs 0.48 on the demo texts).
        # The image tower, timm's smallest ResNet with global average pooling, sees the 64 px pictures
        # upsampled to 128 px (its stem shrinks the input 4x before the first block; at 64 px that erased
        # the pixel-level cues). It trains on random 64 px crops of that input for 5/6 of the steps, then
        # on whole inputs: crops show other parts of the few training pictures at every step, so it
        # learns quality rather than the pictures, and a crop step costs a third of a whole one. An
        # auxiliary RankNet loss (align_rank_weight, AlignConfig.rank_weight) asks a linear read-out of the
        # embedding to order the batch's images by score, which the template texts do poorly. Two crops
        # of each train-only photograph (train_only_crops; synth.TRAIN_ONLY_IMAGES) add real content:
        # test PLCC better on 4 of 5 splits, five-split mean 0.779/0.786 vs 0.750/0.740 without them.
        # 2,700 bf16 steps (native bf16 on both 2-core machines measured) take 6:40 for the whole demo,
        # test PLCC/SRCC 0.871/0.863 on an AMD EPYC (0.850/0.845 without the train-only photographs);
        # the ranking loss won 8 of 9 (seed x split) pairs, weight 2 only 4 of 8 against weight 1
        # (docs/demo_accuracy.md). bf16 and float32 runs differ by up to 0.03; more steps or dead leaves
        # did not help reliably (3,600 steps 0.828).
        return cls(sources=24, procedural=96, train_only_crops=2, image_size=64, text_seeds=(0, 1, 2),
                   grpo_steps=2, describe_images=4, clip_image_size=128, clip_tower="test_resnet",
                   clip_embed_dim=256, clip_text_width=256, clip_text_layers=1, align_steps=2700, align_batch=64,
                   align_lr=3e-3, align_temperature=0.07, align_crop=64, align_full_fraction=1 / 6, align_bf16=True,
                   align_rank_weight=1.0, pca_dim=16, num_buckets=24, num_basis=32, fit_epochs=200,
                   formats=("pytorch-fp32", "onnx-fp32", "onnx-fp16", "onnx-int8-cpu", "onnx-int8-tensorrt",
                            "ort-fp32", "litert-fp32", "litert-int8", "executorch-fp32", "executorch-int8",
                            "openvino-fp32", "openvino-bf16", "openvino-int8", "coreml-fp16", "coreml-int8w",
                            "tensorrt-fp16", "tensorrt-int8"),
                   calib_size=300, bench_repeats=5)

    @classmethod
    def quick(cls) -> DemoSettings:
        return dataclasses.replace(cls.full(), sources=8, procedural=16, text_seeds=(0, 1), grpo_steps=1, describe_images=2,
                                   align_steps=60, align_batch=32, fit_epochs=60, calib_size=64, bench_repeats=2,
                                   formats=("pytorch-fp32", "onnx-fp32", "onnx-int8-cpu", "onnx-int8-tensorrt",
                                            "ort-fp32", "litert-int8", "executorch-int8", "openvino-int8",
                                            "coreml-fp16", "coreml-int8w", "tensorrt-int8"))


@dataclass
class DemoResult:
    out_dir: Path
    settings: DemoSettings
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    resumed: list[str] = field(default_factory=list)


StageFn = Callable[[Path, DemoSettings, dict[str, dict[str, Any]], bool], dict[str, Any]]


def _stage_data(out: Path, s: DemoSettings, done: dict, progress: bool) -> dict[str, Any]:
    from rali_edge.data.synth import synthesize

    ds = synthesize(out / "data", seed=s.seed, sources=s.sources, size=s.image_size, progress=progress,
                    procedural=s.procedural, train_only_crops=s.train_only_crops)
    return {"root": str(ds.root), "train_meta": str(ds.train_meta), "test_meta": str(ds.test_meta),
            "n_train": ds.n_train, "n_test": ds.n_test}


def _stage_texts(out: Path, s: DemoSettings, done: dict, progress: bool) -> dict[str, Any]:
    from rali_edge.data.meta import read_meta
    from rali_edge.teacher.template import describe_with_template

    data = done["data"]
    records = read_meta(data["train_meta"], data["root"])
    path = out / "texts" / "triplets.jsonl"
    stats = describe_with_template(records, s.text_seeds, path, progress=progress)
    return {"triplets": str(path), "written": stats.written, "skipped": stats.skipped,
            "seeds": list(s.text_seeds), "teacher": stats.teacher}


def _stage_teacher(out: Path, s: DemoSettings, done: dict, progress: bool) -> dict[str, Any]:
    """A few GRPO steps and one describe pass with a tiny random Qwen2.5-VL: shows the path works.

    Its texts are NOT used for training (a random model writes noise); the template texts are.
    """
    from rali_edge.data.meta import read_meta
    from rali_edge.teacher.config import GRPOTeacherConfig, ImageBounds
    from rali_edge.teacher.describe import SamplingConfig, describe_with_model, load_teacher
    from rali_edge.teacher.grpo import train_grpo
    from rali_edge.teacher.tiny import build_tiny_teacher

    data = done["data"]
    tiny = out / "teacher" / "tiny-qwen2.5-vl"
    if not (tiny / "RANDOM_WEIGHTS.json").is_file():
        build_tiny_teacher(tiny, seed=s.seed)
    cfg = GRPOTeacherConfig(output_dir=str(out / "teacher" / "grpo"), image_root=data["root"],
                            score_meta=[data["train_meta"]], model=str(tiny), num_generations=2,
                            per_device_train_batch_size=2, gradient_accumulation_steps=1,
                            max_steps=s.grpo_steps, max_completion_length=16, save_steps=10_000,
                            gradient_checkpointing=False, bf16=False, seed=s.seed,
                            images=ImageBounds(min_pixels=28 * 28, max_pixels=56 * 56))
    grpo = train_grpo(cfg)
    model, processor = load_teacher(str(grpo.output_dir), device="cpu")
    records = read_meta(data["test_meta"], data["root"])[: s.describe_images]
    triplets = out / "teacher" / "tiny_teacher_triplets.jsonl"
    stats = describe_with_model(records, [0], triplets, model, processor, teacher_id="tiny-random-qwen2.5-vl",
                                batch_size=2, sampling=SamplingConfig(max_new_tokens=24), progress=progress)
    return {"grpo_steps": grpo.steps, "reward_log": str(grpo.reward_log), "last_metrics": grpo.last_metrics,
            "describe_out": str(triplets), "described": stats.written, "malformed": stats.malformed,
            "used_for_training": False}


def align_precision(s: DemoSettings) -> str:
    """AlignConfig.mixed_precision for this machine: 'bf16' where the CPU has native bf16 (AVX512-BF16 or
    AMX: the demo's align steps take 1.4x (64 px crops) to 2x (128 px) less time), else 'no' (float32;
    emulated bf16 would be slower). Recorded in the train stage's output: the scores differ slightly."""
    from rali_edge.train.align import cpu_has_native_bf16

    return "bf16" if s.align_bf16 and cpu_has_native_bf16() else "no"


def train_config(out: Path, s: DemoSettings, done: dict):
    """The demo's training config: a small open_clip CLIP from a config (a timm ResNet image tower, see
    `tiny_timm_backbone_config`), trained from random weights on the template texts."""
    from rali_edge.model.tiny import tiny_timm_backbone_config
    from rali_edge.train.align import AlignConfig
    from rali_edge.train.compress import CompressConfig
    from rali_edge.train.config import BackboneSpec, DataConfig, TrainConfig
    from rali_edge.train.fit import FitConfig

    data = done["data"]
    backbone_file = out / "train" / "backbone_config.json"
    atomic_write_json(backbone_file, dataclasses.asdict(tiny_timm_backbone_config(
        s.clip_tower, s.clip_image_size, embed_dim=s.clip_embed_dim, text_width=s.clip_text_width,
        text_layers=s.clip_text_layers)))
    return TrainConfig(
        data=DataConfig(train_meta=(data["train_meta"],), image_root=data["root"], triplets=done["texts"]["triplets"]),
        backbone=BackboneSpec(source="random", config_file=str(backbone_file)),
        align=AlignConfig(lr=s.align_lr, max_steps=s.align_steps, batch_size=s.align_batch,
                          temperature=s.align_temperature, random_crop=s.align_crop,
                          full_input_fraction=s.align_full_fraction, mixed_precision=align_precision(s),
                          rank_weight=s.align_rank_weight, seed=s.seed),
        compress=CompressConfig(pca_dim=s.pca_dim, num_buckets=s.num_buckets, num_basis=s.num_basis, seed=s.seed),
        fit=FitConfig(epochs=s.fit_epochs, seed=s.seed),
    )


def _stage_train(out: Path, s: DemoSettings, done: dict, progress: bool) -> dict[str, Any]:
    from rali_edge.train.pipeline import run_training

    config = train_config(out, s, done)
    bundle = run_training(config, out / "train", progress=progress)
    if config.align.mixed_precision == "bf16":
        precision = "bf16 autocast (native on this CPU)"
    else:
        precision = "float32 (this CPU has no native bf16)" if s.align_bf16 else "float32"
    return {"bundle": str(bundle), "align_precision": precision}


def _stage_evaluate(out: Path, s: DemoSettings, done: dict, progress: bool) -> dict[str, Any]:
    from rali_edge.evaluate import evaluate_bundle, write_report

    data = done["data"]
    report = evaluate_bundle(done["train"]["bundle"], [data["test_meta"]], data["root"], progress=progress)
    path = write_report(report, out / "eval.json")
    result = report.datasets[0]
    return {"report": str(path), "n": result.n, **{k: result.metrics[k] for k in ("plcc", "srcc", "krcc", "mae")},
            "protocol": report.protocol}


def _stage_benchmark(out: Path, s: DemoSettings, done: dict, progress: bool) -> dict[str, Any]:
    from rali_edge.report.benchmark import run_benchmark
    from rali_edge.report.table import plain_table

    data = done["data"]
    report = run_benchmark(done["train"]["bundle"], [data["test_meta"]], data["root"], formats=list(s.formats),
                           out_dir=out / "report", calibration=data["train_meta"], calibration_size=s.calib_size,
                           repeats=s.bench_repeats, seed=s.seed, device_preprocess=s.device_preprocess,
                           progress=progress)
    rows = [{k: v for k, v in r.to_dict().items() if k not in ("scores", "drift", "timing")} for r in report.rows]
    device = {f"{r.format} {r.precision}": {d["device_preprocess"]: d["dplcc"] for d in r.drift
                                            if d.get("device_preprocess")} for r in report.rows}
    return {"report_dir": str(out / "report"), "rows": rows, "table": plain_table(report.rows),
            "device_preprocess": {k: v for k, v in device.items() if v}, "failures": report.failures,
            "drift_by_distortion": _drift_by_distortion(report)}


def _drift_by_distortion(report) -> dict[str, dict[str, dict]]:
    """artifact -> distortion class -> n, dPLCC and its 95% interval (the report's slices, in short)."""
    return {a.artifact: {s.value: {"n": s.n, "dplcc": s.dplcc, "dplcc_ci": s.dplcc_ci}
                         for s in a.slices if s.field == "distortion_class"}
            for a in (report.analysis.artifacts if report.analysis else [])}


STAGE_FUNCTIONS: dict[str, StageFn] = {
    "data": _stage_data,
    "texts": _stage_texts,
    "teacher": _stage_teacher,
    "train": _stage_train,
    "evaluate": _stage_evaluate,
    "benchmark": _stage_benchmark,
}


def _marker(out: Path, stage: str) -> Path:
    return out / "stages" / f"{stage}.json"


def _check_settings(out: Path, settings: DemoSettings) -> None:
    """A demo folder belongs to one set of settings: mixing a quick and a full run would resume wrongly."""
    path = out / "demo_settings.json"
    wanted = json.loads(json.dumps(dataclasses.asdict(settings)))
    if path.is_file():
        have = json.loads(path.read_text(encoding="utf-8"))
        if have != wanted:
            raise ConfigError(f"{out} holds a demo run with other settings (quick vs full?); "
                              "pass another --out, or --fresh to start over")
    else:
        atomic_write_json(path, wanted)


def run_demo(out_dir: str | os.PathLike[str], quick: bool = False, progress: bool = True,
             on_stage: Callable[[str, str], None] | None = None, settings: DemoSettings | None = None) -> DemoResult:
    """Run (or resume) every stage; `on_stage(stage, event)` is told 'start', 'done' or 'resumed'.

    `settings` overrides the full/quick presets (for experiments and tests)."""
    out = Path(out_dir).absolute()
    settings = settings or (DemoSettings.quick() if quick else DemoSettings.full())
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, settings)
    result = DemoResult(out_dir=out, settings=settings)
    for stage in STAGES:
        marker = _marker(out, stage)
        if marker.is_file():
            result.stages[stage] = json.loads(marker.read_text(encoding="utf-8"))
            result.resumed.append(stage)
            if on_stage:
                on_stage(stage, "resumed")
            continue
        if on_stage:
            on_stage(stage, "start")
        start = time.perf_counter()
        info = STAGE_FUNCTIONS[stage](out, settings, result.stages, progress)
        result.seconds[stage] = time.perf_counter() - start
        info["seconds"] = result.seconds[stage]
        atomic_write_json(marker, info)
        result.stages[stage] = info
        if on_stage:
            on_stage(stage, "done")
    return result
