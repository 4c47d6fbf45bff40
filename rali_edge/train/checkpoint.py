"""Alignment checkpoints without pickle: safetensors for tensors, JSON for everything else.

A checkpoint is a folder `step_00000042/` holding
    model.safetensors      the trained module's state dict
    optimizer.safetensors  the optimizer's per-parameter state, flattened to "<param id>.<name>"
    state.json             step, optimizer param_groups, the run's config and data key
written atomically (temporary folder + rename), so a kill mid-write leaves the previous checkpoint.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from rali_edge._atomic import atomic_path
from rali_edge.errors import ConfigError

_STEP_DIR = re.compile(r"^step_(\d{8})$")


@dataclass
class Checkpoint:
    path: Path
    step: int
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict
    meta: dict


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for pid, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{name}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], info: dict) -> dict:
    state: dict[int, dict] = {}
    for key, t in tensors.items():
        pid, _, name = key.partition(".")
        state.setdefault(int(pid), {})[name] = t
    for pid, entries in info.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entries)
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
              for g in info["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(root: str | os.PathLike[str], step: int, model_state: dict[str, torch.Tensor],
                    optimizer_state: dict, meta: dict) -> Path:
    from safetensors.torch import save_file

    target = Path(root) / f"step_{step:08d}"
    opt_tensors, opt_info = _flatten_optimizer(optimizer_state)
    weights = {k: v.detach().to("cpu").contiguous().clone() for k, v in model_state.items()}
    with atomic_path(target) as tmp:
        tmp.mkdir()
        save_file(weights, str(tmp / "model.safetensors"))
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(json.dumps({"step": step, "optimizer": opt_info, "meta": meta}, indent=1),
                                        encoding="utf-8")
    return target


def list_checkpoints(root: str | os.PathLike[str]) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        model = load_file(str(path / "model.safetensors"))
        opt_tensors = load_file(str(path / "optimizer.safetensors"))
    except (OSError, json.JSONDecodeError, SafetensorError) as e:
        raise ConfigError(f"{path}: unreadable checkpoint ({e}); delete it to restart from the previous one") from e
    return Checkpoint(path=path, step=int(state["step"]), model_state=model,
                      optimizer_state=_unflatten_optimizer(opt_tensors, state["optimizer"]), meta=state["meta"])


def prune_checkpoints(root: str | os.PathLike[str], keep: int) -> None:
    """Remove all but the `keep` newest checkpoints."""
    import shutil

    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
