"""Run a bundle folder in PyTorch (float32): the reference every exported artifact is compared with.

Same input convention as the artifacts: uint8 RGB [B, 3, H, W], already resized and cropped.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from rali_edge.runtime.base import Runner


class TorchRunner(Runner):
    def __init__(self, path: str | Path, device: str = "cpu"):
        from rali_edge.bundle import load_bundle
        from rali_edge.export.metadata import build_metadata
        from rali_edge.export.spec import ExportSpec
        from rali_edge.model.scorer import RaliScorer

        self.path = Path(path)
        self.device = device
        bundle = load_bundle(self.path)
        self.preprocess = bundle.config.preprocess
        self.scorer = RaliScorer.from_bundle(bundle).eval().to(device)
        spec = ExportSpec(image_size=self.preprocess.image_size, with_embedding=True)
        self.metadata = build_metadata(self.preprocess, spec, "bundle", "fp32", bundle.checksum, None)

    def preprocess_config(self):
        return self.preprocess

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("torch") is None:
            return False, "torch is not installed"
        return True, ""

    def _run_batch(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        from rali_edge.model.preprocess import normalize

        with torch.no_grad():
            x = normalize(torch.from_numpy(inputs).to(self.device), self.preprocess)
            feats = self.scorer.backbone.encode_image(x)
            return {"score": self.scorer.head(feats).cpu().numpy(),
                    "embedding": self.scorer.head.project(feats).cpu().numpy()}
