"""Template describer: quality reasoning text from a record's known distortion and severity.

For synthetic data (the demo, tests) where no trained teacher exists. Texts carry the quality
information a teacher's reasoning would (what is degraded, how badly, the overall level), with
several phrasings chosen by seed, and every line says `teacher: "template"` so nobody mistakes
them for a model's output.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from tqdm.auto import tqdm

from rali_edge.errors import DataError
from rali_edge.teacher.triplets import DescribeStats, Triplet, TripletWriter

TEMPLATE_TEACHER = "template"

# Q-Insight's severity names, mildest first, with the overall level each implies (index into LEVELS).
SEVERITY_LEVEL = {"slight": 3, "moderate": 2, "obvious": 2, "serious": 1, "catastrophic": 0}
# Numeric severities (KADID-style 1..5) mean the same ladder.
NUMERIC_SEVERITY = {"1": "slight", "2": "moderate", "3": "obvious", "4": "serious", "5": "catastrophic"}
LEVELS = ("bad", "poor", "fair", "good", "excellent")
CLEAN_CLASSES = frozenset({"none", "null", "clean", "pristine", "reference"})

# The finer `distortion` a record may carry (synthetic data, KADID-style names) -> vocabulary key,
# so a brightened image (Q-Insight class "darken") is not described as underexposed.
DISTORTION_KEY = {
    "gaussian_blur": "blur",
    "motion_blur": "motion_blur",
    "jpeg": "jpeg",
    "white_noise": "noise",
    "impulse_noise": "impulse_noise",
    "darken": "darken",
    "brighten": "brighten",
    "contrast_loss": "contrast",
    "saturation": "saturation",
    "pixelation": "pixelate",
    "colour_quantization": "quantization",
}
CLASS_NOUN = {
    "blur": "blur",
    "motion_blur": "motion blur",
    "impulse_noise": "impulse noise",
    "saturation": "oversaturation",
    "quantization": "colour quantization",
    "noise": "noise",
    "compression": "compression artifacts",
    "darken": "underexposure",
    "jpeg": "JPEG compression artifacts",
    "brighten": "overexposure",
    "contrast": "a loss of contrast",
    "color": "colour distortion",
    "pixelate": "pixelation",
}
CLASS_EFFECTS = {
    "blur": ("edges are smeared", "fine textures are lost", "details look soft and out of focus"),
    "noise": ("grainy speckles cover flat areas", "random noise masks fine textures", "colour specks break up smooth regions"),
    "compression": ("blocky artifacts appear in smooth areas", "edges show ringing", "gradients break into bands"),
    "jpeg": ("8x8 blocks are visible", "edges show ringing", "colours bleed at boundaries"),
    "darken": ("the exposure is too low", "shadows swallow details", "the scene looks dim and murky"),
    "brighten": ("highlights are blown out", "bright areas lose detail", "the scene looks washed out"),
    "contrast": ("tones look flat", "objects blend into the background", "the scene lacks depth"),
    "color": ("colours look unnatural", "hues are shifted", "saturation is off"),
    "pixelate": ("blocks replace fine detail", "edges look jagged", "textures turn into squares"),
    "motion_blur": ("edges are streaked in one direction", "moving smears hide details", "fine textures are lost"),
    "impulse_noise": ("white and black dots are scattered over the image", "isolated specks break up surfaces",
                      "fine textures are masked by dots"),
    "saturation": ("colours are garish", "hues bleed into each other", "colour detail is clipped"),
    "quantization": ("gradients break into flat bands", "colours are reduced to a few steps", "smooth areas look posterized"),
}
GENERIC_EFFECTS = ("details are degraded", "the distortion is visible across the frame", "textures suffer")
SEVERITY_WORDS = {
    "slight": ("slight", "mild", "faint"),
    "moderate": ("moderate", "noticeable", "clear"),
    "obvious": ("obvious", "evident", "distinct"),
    "serious": ("serious", "heavy", "strong"),
    "catastrophic": ("catastrophic", "extreme", "overwhelming"),
}
OPENINGS = ("The image shows {sev} {noun}; ", "This picture suffers from {sev} {noun}: ", "There is {sev} {noun} in the image: ")
CLEAN_TEXTS = (
    "The image is clean and sharp; edges are crisp, textures are rich and there is no visible distortion.",
    "This picture shows no visible degradation: details are well preserved and the exposure is balanced.",
    "Edges are sharp, noise is absent and colours look natural; the image is free of distortion.",
)
OVERALL = (
    "Overall, the quality is {level}.",
    "The overall quality of this picture is {level}.",
    "Taken together, the image quality is {level}.",
)


class _RecordLike(Protocol):  # rali_edge.data.meta.Record: only these fields are read here
    image: str
    score: float | None
    distortion_class: str | None
    severity: str | None


def _level_from_score(score: float) -> str:
    # [1, 5] split into five equal bands, bad ... excellent.
    idx = min(4, max(0, int((score - 1.0) / 0.8)))
    return LEVELS[idx]


def _severity_name(severity: str | None) -> str | None:
    if severity is None:
        return None
    name = str(severity).strip().lower()
    name = NUMERIC_SEVERITY.get(name, name)
    return None if name in CLEAN_CLASSES else name


def template_text(record: _RecordLike, seed: int) -> str:
    """One reasoning text for `record`; the phrasing depends only on (image, seed)."""
    rng = random.Random(f"{record.image}|{seed}")  # str seeds are hashed deterministically
    cls = (record.distortion_class or "").strip().lower()
    finer = getattr(record, "extras", {}).get("distortion")
    if cls and cls not in CLEAN_CLASSES and finer in DISTORTION_KEY:
        cls = DISTORTION_KEY[finer]
    severity = _severity_name(record.severity)
    if record.score is not None:
        level = _level_from_score(record.score)
    elif severity in SEVERITY_LEVEL:
        level = LEVELS[SEVERITY_LEVEL[severity]]
    elif not cls or cls in CLEAN_CLASSES:
        level = "excellent"
    else:
        raise DataError(f"{record.image}: no score and no known severity ({record.severity!r}) to describe")
    overall = rng.choice(OVERALL).format(level=level)
    if not cls or cls in CLEAN_CLASSES:
        return f"{rng.choice(CLEAN_TEXTS)} {overall}"
    noun = CLASS_NOUN.get(cls, f"{cls} distortion")
    sev_word = rng.choice(SEVERITY_WORDS.get(severity, (severity or "visible",)))
    effects = rng.sample(CLASS_EFFECTS.get(cls, GENERIC_EFFECTS), 2)
    opening = rng.choice(OPENINGS).format(sev=sev_word, noun=noun)
    return f"{opening}{effects[0]} and {effects[1]}. {overall}"


def describe_with_template(
    records: Iterable[_RecordLike],
    seeds: Sequence[int],
    out_path: str | os.PathLike[str],
    progress: bool = True,
) -> DescribeStats:
    """Write one template triplet per (record, seed) to `out_path`, skipping pairs already there."""
    records = list(records)
    seeds = list(seeds)
    if not records:
        raise DataError("describe_with_template: no records given")
    if not seeds:
        raise DataError("describe_with_template: no seeds given")
    stats = DescribeStats(total=len({(r.image, s) for r in records for s in seeds}), out_path=Path(out_path), teacher=TEMPLATE_TEACHER)
    with TripletWriter(out_path) as writer:
        done = writer.done_keys()
        stats.notes["repaired_bytes"] = writer.repaired_bytes
        todo = list({(r.image, s): (r, s) for r in records for s in seeds if (r.image, s) not in done}.values())
        stats.skipped = stats.total - len(todo)
        for record, seed in tqdm(todo, desc="template texts", disable=not progress or not todo):
            if record.score is None:
                raise DataError(f"{record.image}: record has no gt_score_norm; triplets need one")
            text = template_text(record, seed)
            writer.write(Triplet(record.image, float(record.score), seed, text, None, text, TEMPLATE_TEACHER))
            stats.written += 1
    return stats
