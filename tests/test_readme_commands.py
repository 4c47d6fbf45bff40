"""Every `rali-edge` command in the README is real: its options exist, and those that can run offline
are run here on a tiny random scorer and a small synthetic dataset (placeholders swapped for them).

Commands that need a download (hub weights, KonIQ, the official checkpoints) are checked for their
options only; what they do is covered by the teacher, train and official-import tests.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rali_edge.cli.app import app

README = Path(__file__).resolve().parents[1] / "README.md"

# Commands whose inputs only exist after a download; option-checked only, with the reason.
NEEDS_DOWNLOAD = {
    ("teacher", "describe"): "samples the released Q-Insight weights from the hub",
    ("train",): "trains ViT-L/14-336 on KonIQ",
    ("import-official",): "reads the released RALI checkpoint folder",
    ("teacher", "train"): "trains Qwen2.5-VL-7B",
    ("teacher", "ract"): "fine-tunes Qwen2.5-VL-7B",
}


def readme_commands() -> list[list[str]]:
    """rali-edge argument lists from the README's bash blocks and inline code."""
    text = README.read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("#", 1)[0].strip()
            if "rali_edge.cli.app" in line:  # accelerate launch ... -m rali_edge.cli.app ARGS
                commands.append(shlex.split(line.split("rali_edge.cli.app", 1)[1]))
            elif line.startswith("rali-edge "):
                commands.append(shlex.split(line)[1:])
    for inline in re.findall(r"`(rali-edge [^`]+)`", text):
        args = shlex.split(inline)[1:]
        if any(a.startswith("--") for a in args):
            commands.append(args)
    return commands


def _subcommand(args: list[str]) -> tuple[str, ...]:
    groups = {"teacher", "data"}
    return tuple(args[:2]) if args[0] in groups else (args[0],)


def test_readme_has_the_two_setup_commands_first():
    text = README.read_text(encoding="utf-8")
    first_block = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1)
    assert [line.split()[0:2] for line in first_block.strip().splitlines()] == [["make", "demo"], ["make", "test"]]


@pytest.mark.parametrize("args", readme_commands(), ids=lambda a: " ".join(a[:4]))
def test_readme_command_options_exist(args):
    sub = _subcommand(args)
    result = CliRunner().invoke(app, [*sub, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for option in (a.split("=")[0] for a in args if a.startswith("--")):
        assert option in result.output, f"README uses {option} but `rali-edge {' '.join(sub)}` has no such option"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny random scorer, a small synthetic dataset and a photo folder, under README's names."""
    from PIL import Image

    from rali_edge.data.synth import synthesize
    from rali_edge.model.tiny import make_random_bundle

    root = tmp_path_factory.mktemp("readme")
    make_random_bundle(root / "my-scorer", library="open_clip", image_size=32, seed=0)
    data = synthesize(root / "data", seed=0, sources=3, size=48, progress=False)
    photos = root / "photos"
    photos.mkdir()
    test_images = sorted((data.root / "images").rglob("*.png"))
    for i, path in enumerate(test_images[:6]):
        Image.open(path).save(photos / f"p{i}.jpg")
    calib = root / "calib_images"
    calib.mkdir()
    for i, path in enumerate(test_images[:24]):
        Image.open(path).save(calib / f"c{i}.png")
    koniq = root / "Data-DeQA-Score"
    (koniq / "KONIQ" / "metas").mkdir(parents=True)
    (koniq / "SPAQ" / "metas").mkdir(parents=True)
    (koniq / "KONIQ" / "metas" / "test_koniq_2k.json").write_text(data.test_meta.read_text())
    (koniq / "SPAQ" / "metas" / "test_spaq_2k.json").write_text(data.train_meta.read_text())
    (koniq / "images").symlink_to(data.root / "images")
    return root


RUNNABLE = [c for c in readme_commands() if _subcommand(c) not in NEEDS_DOWNLOAD]


def test_readme_lists_runnable_commands():
    subs = {_subcommand(c) for c in RUNNABLE}
    assert {("score",), ("eval",), ("export",), ("validate",), ("benchmark",)} <= subs


@pytest.mark.slow
def test_readme_commands_run(workspace, monkeypatch):
    """Run every offline README command in order (exports first, so validate finds them)."""
    monkeypatch.chdir(workspace)
    for args in RUNNABLE:
        result = CliRunner().invoke(app, args, terminal_width=200)
        assert result.exit_code == 0, f"`rali-edge {' '.join(args)}` failed:\n{result.output}\n{result.exception!r}"
    assert (workspace / "scores.csv").is_file()
    assert (workspace / "eval.json").is_file()
    assert (workspace / "exports" / "scorer-int8.onnx").is_file()
    assert (workspace / "exports" / "scorer-ios.mlpackage").is_dir()
    assert (workspace / "drift" / "report.json").is_file()
    assert (workspace / "bench" / "report.html").is_file()
