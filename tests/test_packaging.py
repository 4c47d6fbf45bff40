"""rali-edge installs beside the user's own torch (issue 29): ranges in the package, the exact pair in
constraints.txt, and every install of the Makefile (so `make demo`, `make test` and CI) applies it.

A pin (==) of torch or torchvision in the library's requirements would make `pip install rali-edge` on
a Jetson replace NVIDIA's torch build. Without the constraints file, pip could resolve the ranges here to
a newer multi-GB CUDA torch instead of the pair on this machine's disk.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PINNED = ("torch", "torchvision")
CONSTRAINTS = ROOT / "constraints.txt"


def _torch_requirements(lines) -> list[Requirement]:
    reqs = [Requirement(line) for line in lines]
    return [r for r in reqs if r.name.lower() in PINNED]


def _exact_pins(reqs: list[Requirement]) -> list[str]:
    return [str(r) for r in reqs if any(s.operator in ("==", "===") for s in r.specifier)]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_pyproject_dependencies_use_ranges_for_torch_and_torchvision():
    project = _pyproject()
    reqs = _torch_requirements(project["dependencies"])
    assert sorted(r.name for r in reqs) == sorted(PINNED), "torch and torchvision must stay direct dependencies"
    assert not _exact_pins(reqs), f"exact pins in [project] dependencies: {_exact_pins(reqs)}"
    for r in reqs:  # a floor the code was checked against, not an open `torch`
        assert any(s.operator == ">=" for s in r.specifier), f"{r} has no lower bound"
    extras = [line for deps in project.get("optional-dependencies", {}).values() for line in deps]
    assert not _exact_pins(_torch_requirements(extras)), "an extra pins torch or torchvision"


def test_installed_metadata_does_not_pin_torch_or_torchvision():
    """What pip reads: the installed distribution's Requires-Dist (stale until the package is reinstalled)."""
    requires = importlib.metadata.requires("rali-edge") or []
    reqs = _torch_requirements(requires)
    assert sorted(r.name for r in reqs if r.marker is None) == sorted(PINNED), requires
    assert not _exact_pins(reqs), (f"installed metadata pins {_exact_pins(reqs)}; reinstall with "
                                   "`make install-test` if pyproject.toml changed since")


def _constraint_pins() -> dict[str, SpecifierSet]:
    lines = [line.split("#", 1)[0].strip() for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines()]
    return {r.name.lower(): r.specifier for r in (Requirement(line) for line in lines if line)}


def test_constraints_file_pins_the_pair_within_the_ranges():
    pins = _constraint_pins()
    ranges = {r.name.lower(): r.specifier for r in _torch_requirements(_pyproject()["dependencies"])}
    for name in PINNED:
        spec = pins.get(name)
        assert spec is not None and len(spec) == 1, f"constraints.txt must pin {name} exactly once"
        (only,) = spec
        assert only.operator == "==" and "*" not in only.version, f"{name}{spec} is not an exact pin"
        assert ranges[name].contains(Version(only.version)), f"{name}=={only.version} is outside {ranges[name]}"


def test_this_environment_has_the_constrained_pair():
    """`make test` installed with the constraints, so the torch under test is the pinned one."""
    for name, spec in _constraint_pins().items():
        if name in PINNED:
            assert spec.contains(Version(importlib.metadata.version(name))), (
                f"{name} {importlib.metadata.version(name)} installed, constraints.txt says {spec}")


def _makefile_rules() -> tuple[list[tuple[list[str], list[str], list[str]]], dict[str, str]]:
    """[(targets, prerequisites, recipe lines)] with $(VAR) expanded, and the variables."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    variables: dict[str, str] = {}
    for m in re.finditer(r"^([A-Za-z_][A-Za-z0-9_]*)\s*[:?]?=\s*(.*)$", text, flags=re.M):
        variables.setdefault(m.group(1), m.group(2).strip())

    def expand(s: str) -> str:
        for _ in range(10):
            s = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: variables.get(m.group(1), ""), s)
        return s

    rules: list[tuple[list[str], list[str], list[str]]] = []
    for line in text.splitlines():
        if line.startswith("\t") and rules:
            rules[-1][2].append(expand(line.strip()))
        elif re.match(r"^[^\s#=][^=]*:(?!=)", line):
            targets, prereqs = line.split(":", 1)
            rules.append((expand(targets).split(), expand(prereqs).replace("|", " ").split(), []))
    return rules, variables


def _project_installs(rules):
    for targets, prereqs, recipe in rules:
        for cmd in recipe:
            if re.search(r"pip install\b", cmd) and not re.search(r"--upgrade pip\s*$", cmd):
                yield targets, prereqs, cmd


def test_makefile_installs_apply_the_constraints_file():
    rules, _ = _makefile_rules()
    installs = list(_project_installs(rules))
    assert installs, "no pip install found in the Makefile"
    stamps = set()
    for targets, prereqs, cmd in installs:
        assert re.search(r"(^|\s)(-c|--constraint)(\s+|=)constraints\.txt(\s|$)", cmd), (
            f"`{cmd}` (target {targets}) does not pass -c constraints.txt")
        assert "constraints.txt" in prereqs, f"{targets} do not depend on constraints.txt: {prereqs}"
        stamps.update(targets)
    # `make demo` and `make test` reach those installs (through their stamps).
    by_target = {t: prereqs for targets, prereqs, _ in rules for t in targets}
    for goal in ("demo", "test"):
        assert stamps & set(by_target[goal]), f"`make {goal}` does not install with the constraints"


@pytest.mark.parametrize("script", [".ci/run"])
def test_ci_goes_through_make_test(script):
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / script).read_text(encoding="utf-8").splitlines()]
    assert "make test" in lines
    assert not [line for line in lines if "pip install" in line], "CI must install through make (constraints)"
