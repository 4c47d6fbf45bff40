"""Optional extras: which of an extra's packages are missing here, said before anything imports them."""

from __future__ import annotations

import importlib.util

from rali_edge.errors import NotRunnableHere


def require_modules(what: str, needs: dict[str, str], extra: str, *modules: str) -> None:
    """NotRunnableHere "<what> needs <packages>: <extra>" when any of `modules` cannot be imported here
    (`needs`: module -> the package that installs it), so a benchmark row says "not runnable here"."""
    missing = [needs[m] for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise NotRunnableHere(f"{what} needs {', '.join(missing)}: {extra}")
