"""Reasoning texts from a teacher model: (image, seed) -> last <think> text + rating, one JSON line each.

Seed augmentation (paper section 4): the same image is sampled with several seeds. Completions
without a <think> text or without a parsable rating are malformed: they are counted, written to a
side file `<out>.malformed.jsonl` with the reason, and kept out of the triplets (a resumed run tries
those pairs again).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rali_edge.errors import ConfigError, DataError
from rali_edge.teacher.prompts import SCORE_PROMPT, conversation
from rali_edge.teacher.rewards import extract_think, format_ok, parse_rating
from rali_edge.teacher.triplets import DescribeStats, Triplet, TripletWriter


@dataclass(frozen=True)
class SamplingConfig:
    """Released Q-Insight inference sampling (REFERENCE section 3)."""

    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 0.95
    max_new_tokens: int = 1024  # the released demo's limit; generation stops at <|im_end|> anyway

    def __post_init__(self) -> None:
        if self.temperature <= 0 or self.top_k < 1 or not 0 < self.top_p <= 1 or self.max_new_tokens < 1:
            raise ConfigError(f"invalid sampling settings: {self}")


def parse_completion(raw: str) -> tuple[str, float] | str:
    """(reasoning text, rating) from one completion, or the reason it is malformed."""
    text = extract_think(raw)
    if text is None:
        return "no <think>...</think> text"
    rating = parse_rating(raw)
    if rating is None:
        return "no parsable \"rating\" in <answer>...</answer>"
    return text, rating


def pick_device(device: str | None) -> str:
    import torch

    if device is not None:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_teacher(
    model_name_or_path: str, device: str | None = None, dtype: str = "auto", subfolder: str = ""
) -> tuple[Any, Any]:
    """Qwen2.5-VL model and processor from a hub name or a local folder (bf16 on GPU by default).

    The released Q-Insight weights are `ByteDance/Q-Insight` with subfolder `score_degradation`.
    """
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    device = pick_device(device)
    dtypes = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32,
              "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if dtype not in dtypes:
        raise ConfigError(f"dtype must be one of {', '.join(dtypes)}, got {dtype!r}")
    try:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            model_name_or_path, dtype=dtypes[dtype], subfolder=subfolder
        )
        processor = AutoProcessor.from_pretrained(model_name_or_path, subfolder=subfolder)
    except OSError as exc:
        raise DataError(f"{model_name_or_path}: cannot load a Qwen2.5-VL model and processor ({exc})") from exc
    model.to(device).eval()
    return model, processor


class _MalformedLog:
    """Append-only side file of completions kept out of the triplets."""

    def __init__(self, path: Path):
        self.path = path
        self._f = None

    def write(self, image: str, seed: int, reason: str, raw: str) -> None:
        if self._f is None:
            self._f = open(self.path, "a", encoding="utf-8")
        self._f.write(json.dumps({"image": image, "seed": seed, "reason": reason, "raw": raw}, ensure_ascii=False) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


def malformed_path_for(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".malformed.jsonl")


def _generate(model: Any, processor: Any, images: list, sampling: SamplingConfig) -> list[str]:
    import torch

    messages = conversation(SCORE_PROMPT)
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt] * len(images), images=images, return_tensors="pt", padding=True)
    inputs = inputs.to(model.device)
    with torch.inference_mode():
        out = model.generate(
            **inputs,
            do_sample=True,
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            max_new_tokens=sampling.max_new_tokens,
        )
    new_tokens = out[:, inputs["input_ids"].shape[1] :]
    return processor.batch_decode(new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def describe_with_model(
    records: Iterable[Any],
    seeds: Sequence[int],
    out_path: str | os.PathLike[str],
    model: Any,
    processor: Any,
    teacher_id: str,
    batch_size: int = 4,
    sampling: SamplingConfig = SamplingConfig(),
    progress: bool = True,
) -> DescribeStats:
    """Sample one completion per (record, seed) not yet in `out_path`; write the well-formed ones.

    `records` are `rali_edge.data.meta.Record`s with a score. Batches hold one seed each; the seed
    sets the sampling RNG before each of its batches (reproducible for the same batch size).
    """
    from transformers import set_seed

    records, seeds = list(records), list(seeds)
    _check_describe_inputs(records, seeds, batch_size)
    processor.tokenizer.padding_side = "left"  # batched generation continues every prompt at its end
    out_path = Path(out_path)
    unique = list({r.image: r for r in records}.values())
    stats = DescribeStats(total=len(unique) * len(seeds), out_path=out_path,
                          malformed_path=malformed_path_for(out_path), teacher=teacher_id)
    malformed_log = _MalformedLog(stats.malformed_path)
    format_pass = 0
    with TripletWriter(out_path) as writer:
        done = writer.done_keys()
        stats.notes["repaired_bytes"] = writer.repaired_bytes
        work = [(seed, [r for r in unique if (r.image, seed) not in done]) for seed in seeds]
        stats.skipped = stats.total - sum(len(todo) for _, todo in work)
        bar = tqdm(total=stats.total - stats.skipped, desc="teacher texts", disable=not progress)
        try:
            for seed, todo in work:
                for start in range(0, len(todo), batch_size):
                    batch = todo[start : start + batch_size]
                    set_seed(seed * 1_000_003 + start)
                    format_pass += _describe_batch(batch, seed, model, processor, sampling, writer,
                                                   malformed_log, stats)
                    bar.update(len(batch))
        finally:
            bar.close()
            malformed_log.close()
    sampled = stats.written + stats.malformed
    stats.notes["format_pass_rate"] = format_pass / sampled if sampled else None
    return stats


def _check_describe_inputs(records: list, seeds: list[int], batch_size: int) -> None:
    if not records or not seeds:
        raise DataError("describe: need at least one record and one seed")
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    missing = [r.image for r in records if r.score is None]
    if missing:
        raise DataError(f"describe: {len(missing)} record(s) have no gt_score_norm (first: {missing[0]})")


def _describe_batch(batch: list, seed: int, model: Any, processor: Any, sampling: SamplingConfig,
                    writer: TripletWriter, malformed_log: _MalformedLog, stats: DescribeStats) -> int:
    """Sample one completion per record of `batch`; write the well-formed ones, log the rest. Returns
    how many completions passed the format check."""
    from rali_edge.data.images import load_images

    loaded, bad = load_images([r.path for r in batch])
    for b in bad:  # unreadable images are logged and counted, never silently dropped
        malformed_log.write(str(b.path), seed, f"image not loadable: {b.reason}", "")
    stats.notes["bad_images"] = stats.notes.get("bad_images", 0) + len(bad)
    if not loaded:
        return 0
    format_pass = 0
    raws = _generate(model, processor, [img for _, img in loaded], sampling)
    for (i, _), raw in zip(loaded, raws, strict=True):
        record = batch[i]
        format_pass += format_ok(raw)
        parsed = parse_completion(raw)
        if isinstance(parsed, str):
            malformed_log.write(record.image, seed, parsed, raw)
            stats.malformed += 1
        else:
            text, rating = parsed
            writer.write(Triplet(record.image, float(record.score), seed, text, rating, raw, stats.teacher))
            stats.written += 1
    return format_pass


def describe(
    model_name_or_path: str,
    records: Iterable[Any],
    seeds: Sequence[int],
    out_path: str | os.PathLike[str],
    batch_size: int = 4,
    sampling: SamplingConfig = SamplingConfig(),
    device: str | None = None,
    dtype: str = "auto",
    subfolder: str = "",
    progress: bool = True,
) -> DescribeStats:
    """Load the teacher (hub name or local path) and run `describe_with_model`."""
    model, processor = load_teacher(model_name_or_path, device=device, dtype=dtype, subfolder=subfolder)
    teacher_id = f"{model_name_or_path}/{subfolder}" if subfolder else str(model_name_or_path)
    return describe_with_model(records, seeds, out_path, model, processor, teacher_id,
                               batch_size=batch_size, sampling=sampling, progress=progress)
