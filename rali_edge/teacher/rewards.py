"""Q-Insight's rule-based rewards and completion parsing (REFERENCE section 3).

Three rewards, summed without weights by the trainer:
- score reward: 1.0 if |rating - gt_score_norm| < threshold (0.35), else 0.0;
- format reward: 1.0 if the whole completion matches the strict think/answer pattern;
- degradation reward: 0.25 for the right distortion class, 0.75 more when the severity also matches.

The reward callables follow TRL's signature `f(prompts, completions, **columns) -> list[float | None]`;
a task-specific reward returns None for rows of the other task (TRL skips those in the sum, so the
total equals Q-Insight's single task-dependent accuracy reward).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from rali_edge.errors import ConfigError
from rali_edge.teacher.prompts import TASK_DEGRADATION, TASK_SCORE

DEFAULT_SCORE_THRESHOLD = 0.35

FORMAT_PATTERN = re.compile(
    r"^<think>\s*\n"  # <think>, optional spaces, newline
    r".*?\n"  # reasoning, up to a newline
    r"\s*</think>\s*\n"
    r"<answer>\s*\n"
    r"\{[^\{\}]*\}"  # one flat JSON object: no nested braces
    r"\s*\n"
    r"\s*</answer>\s*$",
    re.DOTALL | re.MULTILINE,
)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_RATING = re.compile(r"\"rating\"\s*:\s*([\d.]+)")
_DEGRADATION = re.compile(r"\"distortion_class\"\s*:\s*\"([^\"]+)\".*?\"severity\"\s*:\s*\"([^\"]+)\"", re.DOTALL)


def completion_text(completion: Any) -> str:
    """The text of one completion: a plain string, or TRL's conversational `[{"role", "content"}]`."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[0], dict):
        content = completion[0].get("content", "")
        if isinstance(content, str):
            return content
        return "".join(block.get("text", "") for block in content if isinstance(block, dict))
    raise TypeError(f"cannot read a completion of type {type(completion).__name__}")


def format_ok(text: str) -> bool:
    return FORMAT_PATTERN.fullmatch(text) is not None


def extract_think(text: str) -> str | None:
    """The last `<think>...</think>` text, stripped; None when absent or empty."""
    found = _THINK.findall(text)
    if not found:
        return None
    last = found[-1].strip()
    return last or None


def _answer(text: str) -> str | None:
    match = _ANSWER.search(text)
    return match.group(1).strip() if match else None


def parse_rating(text: str) -> float | None:
    """The `"rating"` number inside `<answer>`; None when missing or not a number (e.g. "3.2.1")."""
    answer = _answer(text)
    if answer is None:
        return None
    match = _RATING.search(answer)
    if match is None:
        return None
    try:
        return float(match.group(1))
    except ValueError:
        return None


def parse_degradation(text: str) -> tuple[str, str] | None:
    """(distortion_class, severity) from `<answer>`, stripped; None when missing."""
    answer = _answer(text)
    if answer is None:
        return None
    match = _DEGRADATION.search(answer)
    if match is None:
        return None
    return match.group(1).strip(), match.group(2).strip()


def score_reward_value(text: str, gt_score_norm: float, threshold: float = DEFAULT_SCORE_THRESHOLD) -> float:
    rating = parse_rating(text)
    if rating is None:
        return 0.0
    return 1.0 if abs(rating - gt_score_norm) < threshold else 0.0


def _label(value: str | None) -> str:
    # A clean image's label is JSON null in meta files; the prompt asks the model to answer "null".
    return "null" if value is None else str(value).strip()


def degradation_reward_value(text: str, distortion_class: str | None, severity: str | None) -> float:
    parsed = parse_degradation(text)
    if parsed is None:
        return 0.0
    cls, sev = parsed
    if cls != _label(distortion_class):
        return 0.0
    return 0.25 + (0.75 if sev == _label(severity) else 0.0)


def _texts(completions: Sequence[Any]) -> list[str]:
    return [completion_text(c) for c in completions]


def _tasks(task: Sequence[str] | None, n: int) -> list[str]:
    return list(task) if task is not None else [TASK_SCORE] * n


def make_score_reward(threshold: float = DEFAULT_SCORE_THRESHOLD) -> Callable[..., list[float | None]]:
    """TRL reward function for the score task; needs the `gt_score_norm` (and `task`) columns."""
    if not 0.0 < threshold:
        raise ConfigError(f"score reward threshold must be > 0, got {threshold}")

    def score_reward(prompts, completions, gt_score_norm, task=None, log_metric=None, **_: Any):
        texts = _texts(completions)
        tasks = _tasks(task, len(texts))
        out: list[float | None] = []
        parsed = 0
        n_score = 0
        for text, gt, t in zip(texts, gt_score_norm, tasks, strict=True):
            if t != TASK_SCORE:
                out.append(None)
                continue
            n_score += 1
            parsed += parse_rating(text) is not None
            out.append(score_reward_value(text, float(gt), threshold))
        if log_metric is not None and n_score:
            log_metric("rating_parse_rate", parsed / n_score)
        return out

    return score_reward


def format_reward(prompts, completions, log_metric=None, **_: Any) -> list[float]:
    """TRL reward function: 1.0 when the whole completion matches FORMAT_PATTERN."""
    out = [1.0 if format_ok(text) else 0.0 for text in _texts(completions)]
    if log_metric is not None and out:
        log_metric("format_pass_rate", sum(out) / len(out))
    return out


def degradation_reward(prompts, completions, distortion_class, severity, task=None, **_: Any) -> list[float | None]:
    """TRL reward function for the degradation task; None on score-task rows."""
    texts = _texts(completions)
    tasks = _tasks(task, len(texts))
    return [
        degradation_reward_value(text, cls, sev) if t == TASK_DEGRADATION else None
        for text, cls, sev, t in zip(texts, distortion_class, severity, tasks, strict=True)
    ]
