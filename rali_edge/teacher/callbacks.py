"""Trainer callbacks for the teacher (imported only by the training functions: needs transformers)."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback


class RewardLogCallback(TrainerCallback):
    """Writes each logging step's reward means and format pass rate to a JSONL file (main process).

    TRL logs `rewards/<func>/mean`; the reward functions add `format_pass_rate` (share of
    completions matching the strict format) and `rating_parse_rate` through `log_metric`.
    """

    KEYS = ("reward", "reward_std", "kl", "loss", "learning_rate", "format_pass_rate", "rating_parse_rate",
            "completions/mean_length", "completions/clipped_ratio")

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.last: dict[str, float] = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {k: v for k, v in logs.items() if k in self.KEYS or k.startswith("rewards/")}
        if not row:
            return
        row = {"step": state.global_step, **row}
        self.last = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
