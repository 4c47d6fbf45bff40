"""The RALI model: preprocessing, backbones (HF CLIP, open_clip), the scoring head and the scorer.

Import the submodules directly (`rali_edge.model.scorer`, ...): this package imports nothing heavy.
"""
