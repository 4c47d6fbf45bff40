"""rali-edge: train RALI image-quality scorers and ship them to edge devices.

Importing this package stays light: torch, transformers and friends load only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = ["__version__", "load_scorer", "Scorer"]

if TYPE_CHECKING:
    from rali_edge.model.scorer import Scorer


def load_scorer(bundle_dir, device: str = "cpu") -> "Scorer":
    """Load a scorer bundle (checksums verified) and return an object with `.score(images)`."""
    from rali_edge.model.scorer import load_scorer as _load

    return _load(bundle_dir, device=device)


def __getattr__(name: str):
    if name == "Scorer":
        from rali_edge.model.scorer import Scorer

        return Scorer
    raise AttributeError(f"module 'rali_edge' has no attribute {name!r}")
