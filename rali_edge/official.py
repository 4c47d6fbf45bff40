"""Import the released official RALI checkpoint folder into a bundle (no pickle in the result).

The folder (REFERENCE section 1):
    ckpt.pt     {"state_dict": {"clip.*", "scorer.pca_scale", "scorer.pca_components",
                "scorer.prototypes", "scorer.proto_scores", "scorer.logit_scale"}}; weights_only load
    pca.pkl     a joblib-pickled scikit-learn PCA: `mean_` is the only source of pca_mean.
                Unpickling runs code, so it is read only with trust_pickle=True. A pickle-free
                alternative: `pca.npz` with arrays `mean` and `components` (see PICKLE_REFUSAL).
    basis.npz   "vectors" [K, M] and "scores" [K]
    best/       Hugging Face CLIPModel folder (config.json, weights, preprocessor_config.json)

Trained values in ckpt.pt override basis.npz, pca.pkl and the CLIP weights in best/.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rali_edge.bundle import sha256_file
from rali_edge.errors import ConfigError, DataError

CKPT_FILE, PCA_PICKLE, PCA_NPZ, BASIS_FILE, CLIP_DIR = "ckpt.pt", "pca.pkl", "pca.npz", "basis.npz", "best"
SCORER_KEYS = ("pca_scale", "pca_components", "prototypes", "proto_scores", "logit_scale", "pca_mean")

PICKLE_REFUSAL = (
    "{path} is a Python pickle (joblib): loading a pickle can run arbitrary code, so rali-edge does "
    "not open it unless you say you trust the file. If it comes from the official release, pass "
    "--trust-pickle (trust_pickle=True). Or extract the PCA once in an isolated environment and "
    "put the arrays beside it, which needs no pickle here:\n"
    "  python -c \"import joblib, numpy as np; p = joblib.load('pca.pkl'); "
    "np.savez('pca.npz', mean=p.mean_, components=p.components_)\""
)


@dataclass
class _Pca:
    mean: np.ndarray  # [D]
    components: np.ndarray  # [M, D]
    source: str


def _read_ckpt(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise DataError(f"{path}: missing (the official checkpoint folder needs {CKPT_FILE})")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise DataError(f"{path}: cannot be read as a weights-only torch checkpoint ({type(e).__name__}: {e})") from e
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path}: expected a dict of tensors (or {{'state_dict': ...}}), got {type(obj).__name__}")
    unknown = sorted(k for k in state if not k.startswith(("clip.", "scorer.")))
    unknown += sorted(k for k in state if k.startswith("scorer.") and k[len("scorer."):] not in SCORER_KEYS)
    if unknown:
        raise DataError(f"{path}: unexpected state dict keys {unknown[:5]} (expected clip.* and scorer.*)")
    return state


def _read_pca(folder: Path, trust_pickle: bool) -> _Pca:
    npz = folder / PCA_NPZ
    if npz.is_file():
        with np.load(npz, allow_pickle=False) as z:
            if "mean" not in z or "components" not in z:
                raise DataError(f"{npz}: needs arrays 'mean' and 'components', has {sorted(z.files)}")
            return _Pca(np.asarray(z["mean"]), np.asarray(z["components"]), str(npz))
    pkl = folder / PCA_PICKLE
    if not pkl.is_file():
        raise DataError(f"{folder}: neither {PCA_PICKLE} nor {PCA_NPZ} found; the PCA mean comes only from there")
    if not trust_pickle:
        raise ConfigError(PICKLE_REFUSAL.format(path=pkl))
    import joblib

    pca = joblib.load(pkl)  # the user opted in with trust_pickle
    if not hasattr(pca, "mean_") or not hasattr(pca, "components_"):
        raise DataError(f"{pkl}: expected a fitted scikit-learn PCA (mean_, components_), got {type(pca).__name__}")
    return _Pca(np.asarray(pca.mean_), np.asarray(pca.components_), str(pkl))


def _read_basis(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: missing (basis vectors and scores)")
    with np.load(path, allow_pickle=False) as z:
        if "vectors" not in z or "scores" not in z:
            raise DataError(f"{path}: needs arrays 'vectors' and 'scores', has {sorted(z.files)}")
        return np.asarray(z["vectors"]), np.asarray(z["scores"])


def _load_clip(best: Path, clip_state: dict[str, torch.Tensor]):
    """best/ CLIPModel, then the ckpt's clip.* tensors on top (they win)."""
    from rali_edge.model.backbone import load_hf_backbone

    if not (best / "config.json").is_file():
        raise DataError(f"{best}: not a Hugging Face model folder (no config.json)")
    if not (best / "preprocessor_config.json").is_file():
        raise DataError(f"{best}: preprocessor_config.json is missing; the official preprocessing comes from it")
    backbone = load_hf_backbone(str(best))
    model = backbone.model
    own = model.state_dict()
    # Buffers saved by older transformers versions but not persistent now (e.g. position_ids):
    # accept them only when they equal ours.
    transient = {n: b for n, b in model.named_buffers() if n not in own}
    unexpected = [k for k in clip_state if k not in own and k not in transient]
    differing = [k for k in clip_state if k in transient and not torch.equal(clip_state[k], transient[k])]
    if unexpected or differing:
        raise DataError(f"{CKPT_FILE}: clip.* tensors do not fit best/config.json: unexpected {unexpected[:5]}, "
                        f"differing buffers {differing[:5]}")
    loadable = {k: v for k, v in clip_state.items() if k in own}
    bad_shape = [k for k, v in loadable.items() if tuple(v.shape) != tuple(own[k].shape)]
    if bad_shape:
        raise DataError(f"{CKPT_FILE}: clip.* tensors with shapes that do not fit best/: {bad_shape[:5]}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in loadable.items()}, strict=False)
    return backbone.eval(), len(loadable), len(own)


def _head_tensors(scorer: dict[str, torch.Tensor], pca: _Pca, basis: tuple[np.ndarray, np.ndarray]):
    from rali_edge.model.head import DEFAULT_LOGIT_SCALE

    f32 = torch.float32
    vectors, scores = basis
    pick = {
        "pca_mean": scorer.get("pca_mean", torch.from_numpy(pca.mean)),
        "pca_components": scorer.get("pca_components", torch.from_numpy(pca.components)),
        "prototypes": scorer.get("prototypes", torch.from_numpy(vectors)),
        "proto_scores": scorer.get("proto_scores", torch.from_numpy(scores)),
        "pca_scale": scorer.get("pca_scale", torch.ones(pca.mean.shape[0])),
        "logit_scale": scorer.get("logit_scale", torch.tensor(DEFAULT_LOGIT_SCALE)),
    }
    out = {k: v.detach().to(f32) for k, v in pick.items()}
    out["logit_scale"] = out["logit_scale"].reshape(())
    return out, sorted(k for k in pick if k in scorer)


def import_official(ckpt_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                    trust_pickle: bool = False) -> Path:
    """Convert the official checkpoint folder into a bundle at out_dir; returns out_dir."""
    from rali_edge.bundle import Provenance
    from rali_edge.errors import BundleError
    from rali_edge.model.head import RaliHead
    from rali_edge.model.scorer import RaliScorer

    folder = Path(ckpt_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: official checkpoint folder does not exist")
    state = _read_ckpt(folder / CKPT_FILE)
    pca = _read_pca(folder, trust_pickle)  # before the slow part: refuse early
    basis = _read_basis(folder / BASIS_FILE)
    clip_state = {k[len("clip."):]: v for k, v in state.items() if k.startswith("clip.")}
    scorer_state = {k[len("scorer."):]: v for k, v in state.items() if k.startswith("scorer.")}
    backbone, n_clip, n_total = _load_clip(folder / CLIP_DIR, clip_state)
    head_t, from_ckpt = _head_tensors(scorer_state, pca, basis)
    try:
        head = RaliHead.from_tensors(head_t)
    except BundleError as e:
        raise DataError(f"{folder}: PCA / basis / ckpt tensors do not fit together: {e}") from e
    scorer = RaliScorer(backbone, head)
    files = [folder / n for n in (CKPT_FILE, BASIS_FILE)] + [Path(pca.source)]
    notes = {
        "source": "official RALI checkpoint",
        "imported_from": str(folder.resolve()),
        "sha256": {p.name: sha256_file(p) for p in files},
        "pca_from": Path(pca.source).name,
        "head_tensors_from_ckpt": from_ckpt,
        "clip_tensors_from_ckpt": f"{n_clip} of {n_total}",
        "preprocess_from": f"{CLIP_DIR}/preprocessor_config.json",
    }
    prov = Provenance.now(notes=json.loads(json.dumps(notes)))
    return scorer.save(out_dir, backbone.default_preprocess(), prov)
