"""`import rali_edge` and `rali-edge --help` must not pull in heavy libraries."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

HEAVY = ("torch", "transformers", "open_clip", "trl", "coremltools", "tensorrt", "modelopt", "onnxruntime")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print('\\n'.join(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split())


def test_import_rali_edge_is_light():
    loaded = _modules_after("import rali_edge")
    assert not [m for m in HEAVY if m in loaded]


def test_cli_help_is_light():
    loaded = _modules_after("import rali_edge.cli.app")
    assert not [m for m in HEAVY if m in loaded]


def test_help_lists_every_planned_command():
    from rali_edge.cli.app import app

    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "data", "teacher", "train", "eval", "score", "import-official", "export",
                    "validate", "benchmark"):
        assert command in result.output


def test_version_flag():
    from rali_edge import __version__
    from rali_edge.cli.app import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output
