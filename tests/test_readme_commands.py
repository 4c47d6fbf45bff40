"""The README is a true front page: every `rali-edge` command in it is real (its options exist), and
those that can run offline are run here on a tiny random scorer and a small synthetic dataset laid
out under the README's own names (the quick start's `rali-demo/` folder included).

Commands that need a download (hub weights, KonIQ, the official checkpoints) are checked for their
options only; what they do is covered by the teacher, train and official-import tests. The README
also stays short (<= 150 lines of <= 100 characters), its formats table lists every (format,
precision) of the format table, and its extras list matches pyproject.toml.
"""

from __future__ import annotations

import re
import shlex
import shutil
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rali_edge.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES, MAX_WIDTH = 150, 100

# Commands whose inputs only exist after a download; option-checked only, with the reason.
NEEDS_DOWNLOAD = {
    ("teacher", "describe"): "samples the released Q-Insight weights from the hub",
    ("train",): "trains ViT-L/14-336 on KonIQ",
    ("import-official",): "reads the released RALI checkpoint folder",
    ("teacher", "train"): "trains Qwen2.5-VL-7B",
    ("teacher", "ract"): "fine-tunes Qwen2.5-VL-7B",
}
# Commands run by other tests; option-checked only here.
RUN_ELSEWHERE = {
    ("demo",): "the whole chain for minutes; tests/test_demo.py runs it",
}

# Where `rali-edge demo` (rali_edge/demo.py) writes what the quick start uses, under its --out folder.
DEMO_BUNDLE = "train/bundle"
DEMO_DATA = "data"


def _text() -> str:
    return README.read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", _text(), flags=re.S)


def _parse_block(block: str) -> list[list[str]]:
    commands = []
    joined = re.sub(r"\\\n\s*", " ", block)
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if "rali_edge.cli.app" in line:  # accelerate launch ... -m rali_edge.cli.app ARGS
            commands.append(shlex.split(line.split("rali_edge.cli.app", 1)[1]))
        elif line.startswith("rali-edge "):
            commands.append(shlex.split(line)[1:])
    return commands


def readme_commands() -> list[list[str]]:
    """rali-edge argument lists from the README's bash blocks (in order) and inline code."""
    commands = [c for block in _blocks("bash") for c in _parse_block(block)]
    for inline in re.findall(r"`(rali-edge [^`]+)`", _text()):
        args = shlex.split(inline)[1:]
        if any(a.startswith("--") for a in args):
            commands.append(args)
    return commands


def quick_start_commands() -> list[list[str]]:
    section = _text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [c for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S) for c in _parse_block(block)]


def _subcommand(args: list[str]) -> tuple[str, ...]:
    groups = {"teacher", "data"}
    return tuple(args[:2]) if args[0] in groups else (args[0],)


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def _positionals(args: list[str]) -> list[str]:
    """Arguments that are neither options nor option values (every README option takes a value
    except the flags listed here)."""
    flags = {"--trust-pickle", "--logistic", "--quick", "--fresh", "--dynamic", "--simplify", "--with-embedding"}
    out, skip = [], False
    for a in args[len(_subcommand(args)):]:
        if skip:
            skip = False
        elif a.startswith("--"):
            skip = a not in flags and "=" not in a
        else:
            out.append(a)
    return out


# --- the page itself ----------------------------------------------------------------------------


def test_readme_is_a_front_page():
    lines = _text().splitlines()
    assert len(lines) <= MAX_LINES, f"README has {len(lines)} lines (at most {MAX_LINES})"
    long = [f"{i}: {len(line)}" for i, line in enumerate(lines, 1) if len(line) > MAX_WIDTH]
    assert not long, f"README lines over {MAX_WIDTH} characters (line: length): {long}"


def test_readme_has_the_two_setup_commands_first():
    first_block = _blocks("bash")[0]
    assert [line.split()[0:2] for line in first_block.strip().splitlines()] == [["make", "demo"], ["make", "test"]]


def _formats_table() -> list[list[str]]:
    lines = _text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Format | Precision |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


CHECKS = ("run in ", "simulated (needs macOS to run)", "not runnable here")


def test_readme_formats_table_lists_every_format_and_precision():
    from rali_edge.export.formats import FORMATS

    listed = []
    for fmt_cell, precision_cell, *_, check in _formats_table():
        fmt = fmt_cell.strip("`")
        assert fmt in FORMATS, f"README's formats table lists {fmt!r}, which the format table lacks"
        caps = FORMATS[fmt]
        assert check.startswith(CHECKS), f"{fmt}: say how it is checked ({' / '.join(CHECKS)}), not {check!r}"
        if check.startswith("run in "):   # in the format's own runtime, and it runs here
            assert check.startswith(f"run in {caps.runtime}"), f"{fmt} runs in {caps.runtime}, not {check!r}"
            assert caps.runnable_here()[0], f"{fmt}: {caps.runnable_here()[1]}"
        if check.startswith("simulated"):
            assert caps.simulator is not None, f"{fmt} has no simulator"
        listed += [(fmt, p.strip()) for p in precision_cell.split(",")]
    expected = [(name, p) for name, caps in FORMATS.items() for p in caps.precisions]
    assert sorted(listed) == sorted(expected), "README's formats table and rali_edge.export.formats.FORMATS differ"


def test_readme_lists_every_extra():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    listed = re.findall(r"^- `([\w-]+)`:", _text(), flags=re.M)
    assert listed == list(extras), "README's extras list and pyproject.toml's optional-dependencies differ"
    assert 'pip install -e ".[coreml]"' in _text()


def test_quick_start_uses_what_make_demo_writes():
    """Score, an INT8 export with calibration, validate: on the paths a default `make demo` writes."""
    from rali_edge.data.synth import plan_sources
    from rali_edge.demo import DemoSettings

    help_text = CliRunner().invoke(app, ["demo", "--help"], terminal_width=200).output
    out = re.search(r"\[default: ([^\]]+)\]", help_text).group(1)
    commands = quick_start_commands()
    assert [_subcommand(c) for c in commands] == [("score",), ("export",), ("validate",)]
    score, export, validate = commands
    bundle, data = f"{out}/{DEMO_BUNDLE}", f"{out}/{DEMO_DATA}"
    assert _positionals(score)[0] == bundle and _positionals(export)[0] == bundle
    assert _option(validate, "--bundle") == bundle
    assert _option(export, "--precision") == "int8"
    assert _option(export, "--calibration") == f"{data}/metas/train.json"
    assert _option(export, "--image-root") == data == _option(validate, "--image-root")
    assert _option(validate, "--meta") == f"{data}/metas/test.json"
    assert _option(validate, "--max-plcc-drop") == "0.01"
    assert _positionals(validate)[0] == f"{_option(export, '--out')}/{_option(export, '--name')}.onnx"
    # the scored folder is one test picture of the default (full) demo's data
    s = DemoSettings.full()
    test_sources = {p.name for p in plan_sources(s.seed, s.sources, s.procedural, s.train_only_crops)
                    if p.split == "test"}
    picture = Path(_positionals(score)[1])
    assert picture.parent.as_posix() == f"{data}/images" and picture.name in test_sources


# --- the commands -------------------------------------------------------------------------------


@pytest.mark.parametrize("args", readme_commands(), ids=lambda a: " ".join(a[:4]))
def test_readme_command_options_exist(args):
    sub = _subcommand(args)
    result = CliRunner().invoke(app, [*sub, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for option in (a.split("=")[0] for a in args if a.startswith("--")):
        assert option in result.output, f"README uses {option} but `rali-edge {' '.join(sub)}` has no such option"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny random scorer, a small synthetic dataset and photo folders, under README's names."""
    from PIL import Image

    from rali_edge.data.synth import synthesize
    from rali_edge.model.tiny import make_random_bundle

    root = tmp_path_factory.mktemp("readme")
    make_random_bundle(root / "my-scorer", library="open_clip", image_size=32, seed=0)
    data = synthesize(root / "data", seed=0, sources=3, size=48, progress=False)
    test_images = sorted((data.root / "images").rglob("*.png"))
    photos = root / "photos"
    photos.mkdir()
    for i, path in enumerate(test_images[:6]):
        Image.open(path).save(photos / f"p{i}.jpg")
    Image.open(test_images[0]).save(photos / "a.jpg")
    Image.open(test_images[1]).save(photos / "b.png")
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
    # the quick start's demo folder: the tiny scorer as the demo bundle, the synthetic data as its data
    demo = root / "rali-demo"
    (demo / DEMO_BUNDLE).parent.mkdir(parents=True)
    (demo / DEMO_BUNDLE).symlink_to(root / "my-scorer", target_is_directory=True)
    (demo / DEMO_DATA).symlink_to(data.root, target_is_directory=True)
    picture = root / _positionals(quick_start_commands()[0])[1]
    if not picture.is_dir():  # the full demo's test picture; the tiny data has other pictures
        picture.mkdir()
        for path in test_images[:8]:
            shutil.copy(path, picture / path.name)
    return root


RUNNABLE = [c for c in readme_commands() if _subcommand(c) not in NEEDS_DOWNLOAD | RUN_ELSEWHERE]


def test_readme_lists_runnable_commands():
    subs = {_subcommand(c) for c in RUNNABLE}
    assert {("score",), ("eval",), ("export",), ("quantize",), ("validate",), ("benchmark",)} <= subs


def test_readme_python_runs(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    for block in _blocks("python"):
        namespace: dict = {}
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["scores"].shape == (2,)


@pytest.mark.slow
def test_readme_commands_run(workspace, monkeypatch):
    """Run every offline README command in order (exports first, so validate finds them)."""
    monkeypatch.chdir(workspace)
    for args in RUNNABLE:
        result = CliRunner().invoke(app, args, terminal_width=200)
        assert result.exit_code == 0, f"`rali-edge {' '.join(args)}` failed:\n{result.output}\n{result.exception!r}"
    for path in ("rali-demo/scores.csv", "rali-demo/exports/demo-int8.onnx", "scores.csv", "eval.json",
                 "exports/scorer-int8.onnx",
                 "exports/scorer-budget.onnx", "exports/scorer-litert.tflite", "drift/report.json",
                 "bench/report.html"):
        assert (workspace / path).is_file(), path
    assert (workspace / "exports" / "scorer-ios.mlpackage").is_dir()
