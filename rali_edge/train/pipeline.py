"""The three RALI training stages in order, each resumable from its outputs in one output folder.

    out/align/      encoder.safetensors, text_embeddings.safetensors, checkpoints/, log.jsonl
    out/compress/   split.json, embeddings.safetensors, compress.safetensors
    out/fit/        log.jsonl
    out/bundle/     the scorer bundle (config.json + model.safetensors + manifest.json)

A stage is complete when its `stage_done.json` exists (written last, atomically). It records a hash of
the settings the stage depends on, including the upstream stages' hashes; a complete stage with the
same hash is skipped, one with another hash is a ConfigError (use a new output folder). An
interrupted align resumes from its newest checkpoint; interrupted compress/fit simply run again.

Validation split (for fit's early stopping): whole groups of records (same `source`, else the same
image) are drawn in a seeded order until `fit.val_fraction` of the records is reached, so distorted
versions of one picture never sit on both sides. Compress (PCA, k-means) sees the training part only.
Alignment uses every triplet given (the teacher described the training images).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from rali_edge._atomic import atomic_write_json
from rali_edge.errors import ConfigError, DataError
from rali_edge.train.config import TrainConfig, check_data

STAGES = ("align", "compress", "fit")
MARKER = "stage_done.json"


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_hashes(config: TrainConfig) -> dict[str, str]:
    d = config.to_dict()
    data = d["data"]
    align = _hash({"backbone": d["backbone"], "align": d["align"], "triplets": data["triplets"],
                   "image_root": data["image_root"]})
    compress = _hash({"up": align, "compress": d["compress"], "train_meta": data["train_meta"],
                      "image_root": data["image_root"], "split": [d["fit"]["val_fraction"], d["fit"]["seed"]]})
    return {"align": align, "compress": compress, "fit": _hash({"up": compress, "fit": d["fit"]})}


def stage_done(out_dir: Path, stage: str, expected: str) -> bool:
    marker = out_dir / stage / MARKER
    if not marker.is_file():
        return False
    found = json.loads(marker.read_text(encoding="utf-8")).get("hash")
    if found != expected:
        raise ConfigError(
            f"{marker}: stage {stage} in this output folder was run with other settings; "
            "use a new --out folder (or delete that stage folder and the ones after it to redo them)"
        )
    return True


def _mark_done(out_dir: Path, stage: str, digest: str, info: dict) -> None:
    atomic_write_json(out_dir / stage / MARKER, {"stage": stage, "hash": digest, **info})


# ---------------------------------------------------------------- backbone and data


def _tiny(spec, seed: int):
    from rali_edge.model.backbone import build_backbone
    from rali_edge.model.tiny import tiny_backbone_config

    torch.manual_seed(seed)  # a random-weight backbone must come out identical on every (re)start
    return build_backbone(tiny_backbone_config(spec.library, spec.image_size))


def _pretrained(spec, seed: int):
    from rali_edge.model.backbone import load_pretrained_backbone

    return load_pretrained_backbone(spec.library, spec.name, spec.pretrained or None)


def _random(spec, seed: int):
    from rali_edge.bundle import BackboneConfig
    from rali_edge.errors import BundleError
    from rali_edge.model.backbone import build_backbone

    path = Path(spec.config_file)
    if not spec.config_file or not path.is_file():
        raise ConfigError(f"backbone.source = 'random' needs backbone.config_file (a BackboneConfig JSON); got {path}")
    try:
        cfg = BackboneConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, BundleError) as e:
        raise ConfigError(f"{path}: not a backbone config ({e})") from e
    torch.manual_seed(seed)
    return build_backbone(cfg)


BACKBONE_LOADERS = {"tiny": _tiny, "pretrained": _pretrained, "random": _random}


def base_backbone(config: TrainConfig):
    return BACKBONE_LOADERS[config.backbone.source](config.backbone, config.align.seed)


def aligned_backbone(config: TrainConfig, out_dir: Path):
    from safetensors.torch import load_file

    backbone = base_backbone(config)
    backbone.image_encoder().load_state_dict(load_file(str(out_dir / "align" / "encoder.safetensors")))
    return backbone.eval()


def training_records(config: TrainConfig) -> list:
    from rali_edge.data.meta import read_meta

    records = [r for meta in config.data.train_meta for r in read_meta(meta, config.data.image_root)]
    unscored = [r.image for r in records if r.score is None]
    if unscored:
        raise DataError(f"training records need gt_score_norm; {len(unscored)} have none, e.g. {unscored[:3]}")
    return records


def split_records(records: list, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, validation indices), grouped by source (else image), seeded."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(r.source or r.image, []).append(i)
    keys = list(groups)
    target = round(val_fraction * len(records))
    val: list[int] = []
    for k in (keys[j] for j in np.random.default_rng(seed).permutation(len(keys))):
        if len(val) >= target or len(val) + len(groups[k]) >= len(records):
            break
        val.extend(groups[k])
    taken = set(val)
    return [i for i in range(len(records)) if i not in taken], sorted(val)


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _embeddings(config: TrainConfig, out_dir: Path, backbone, records: list, progress: bool) -> np.ndarray:
    from rali_edge.train.embeddings import extract_embeddings

    encoder = backbone.image_encoder().to(_device())
    return extract_embeddings(encoder, [r.path for r in records], backbone.default_preprocess(),
                              device=_device(), cache_path=out_dir / "compress" / "embeddings.safetensors",
                              progress=progress)


# ---------------------------------------------------------------- stages


def run_align(config: TrainConfig, out_dir: Path, progress: bool) -> dict:
    from rali_edge.teacher.triplets import read_triplets
    from rali_edge.train.align import align

    check_data(config, "align")
    triplets = read_triplets(config.data.triplets)
    result = align(base_backbone(config), triplets, config.data.image_root, config.align, out_dir / "align",
                   progress=progress)
    return {"steps": result.steps, "last_loss": result.last_loss, "triplets": len(triplets)}


def run_compress(config: TrainConfig, out_dir: Path, progress: bool) -> dict:
    from safetensors.torch import save_file

    from rali_edge._atomic import atomic_path
    from rali_edge.train.compress import compress_with_info

    check_data(config, "compress")
    records = training_records(config)
    train_idx, val_idx = split_records(records, config.fit.val_fraction, config.fit.seed)
    atomic_write_json(out_dir / "compress" / "split.json",
                      {"train": [records[i].image for i in train_idx], "val": [records[i].image for i in val_idx]})
    emb = _embeddings(config, out_dir, aligned_backbone(config, out_dir), records, progress)
    scores = np.array([r.score for r in records], dtype=np.float64)
    res, info = compress_with_info(emb[train_idx], scores[train_idx], config.compress)
    tensors = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in res._asdict().items()}
    tensors["bucket_of"] = torch.from_numpy(info.bucket_of)
    with atomic_path(out_dir / "compress" / "compress.safetensors") as tmp:
        save_file(tensors, str(tmp))
    return {"train": len(train_idx), "val": len(val_idx), "num_basis": int(len(res.proto_scores)),
            "buckets_used": int(len(set(info.bucket_of.tolist()))),
            "explained_variance": float(info.explained_variance_ratio.sum())}


def run_fit(config: TrainConfig, out_dir: Path, progress: bool) -> dict:
    from safetensors.torch import load_file

    from rali_edge.bundle import Provenance
    from rali_edge.model.scorer import RaliScorer
    from rali_edge.train.fit import fit_head, head_from_compress

    check_data(config, "fit")
    records = training_records(config)
    split = json.loads((out_dir / "compress" / "split.json").read_text(encoding="utf-8"))
    index = {r.image: i for i, r in enumerate(records)}
    try:
        train_idx, val_idx = [index[i] for i in split["train"]], [index[i] for i in split["val"]]
    except KeyError as e:
        raise ConfigError(f"{out_dir / 'compress' / 'split.json'}: image {e} is not in the training records") from e
    backbone = aligned_backbone(config, out_dir)
    emb = _embeddings(config, out_dir, backbone, records, progress)
    scores = np.array([r.score for r in records], dtype=np.float32)
    c = load_file(str(out_dir / "compress" / "compress.safetensors"))
    head = head_from_compress(c["pca_mean"], c["pca_components"], c["prototypes"], c["proto_scores"])
    result = fit_head(head, emb[train_idx], scores[train_idx], emb[val_idx], scores[val_idx], config.fit,
                      log_path=out_dir / "fit" / "log.jsonl", progress=progress)
    spec = config.backbone
    notes = {"config": config.to_dict(), "random_weights": spec.source != "pretrained",
             "fit": {"best_epoch": result.best_epoch, "best_val_mse": result.best_val_mse},
             "made_by": "rali_edge.train.pipeline.run_training"}
    prov = Provenance.now(data=[*config.data.train_meta, config.data.triplets],
                          seeds=[config.align.seed, config.compress.seed, config.fit.seed], notes=notes)
    RaliScorer(backbone.cpu(), result.head).save(out_dir / "bundle", backbone.default_preprocess(), prov)
    return {"best_epoch": result.best_epoch, "best_val_mse": result.best_val_mse, "bundle": "bundle"}


RUNNERS = {"align": run_align, "compress": run_compress, "fit": run_fit}


def _is_main_process() -> bool:
    # Under `accelerate launch` (torchrun env), every process aligns (DDP); compress and fit are
    # single-process work, so only rank 0 does them and writes markers.
    return int(os.environ.get("RANK", "0")) == 0


def run_training(config: TrainConfig, out_dir: str | os.PathLike[str], stages: tuple[str, ...] = STAGES,
                 progress: bool = True) -> Path | None:
    """Run the requested stages (skipping complete ones); returns the bundle path once fit is done."""
    out_dir = Path(out_dir)
    unknown = [s for s in stages if s not in RUNNERS]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; stages are {list(STAGES)}")
    hashes = stage_hashes(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    if _is_main_process():
        atomic_write_json(out_dir / "train_config.json", config.to_dict())
    for i, stage in enumerate(STAGES):
        if stage_done(out_dir, stage, hashes[stage]):
            continue
        if stage not in stages:
            if any(s in stages for s in STAGES[i + 1 :]):
                raise ConfigError(f"stage {stage} has not completed in {out_dir}; run it first (--stage {stage} or all)")
            continue
        if stage != "align" and not _is_main_process():
            return None
        (out_dir / stage).mkdir(parents=True, exist_ok=True)
        info = RUNNERS[stage](config, out_dir, progress)
        if _is_main_process():
            _mark_done(out_dir, stage, hashes[stage], info)
    return out_dir / "bundle" if stage_done(out_dir, "fit", hashes["fit"]) else None


def stage_summary(out_dir: str | os.PathLike[str]) -> dict[str, dict | None]:
    """What each stage's marker says (None when not complete), for the CLI's report."""
    out: dict[str, dict | None] = {}
    for stage in STAGES:
        marker = Path(out_dir) / stage / MARKER
        out[stage] = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else None
    return out

