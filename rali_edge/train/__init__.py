"""RALI training (paper section 4): align -> compress -> fit, one TOML config, resumable stages.

Modules (import them directly; nothing heavy is imported here):
    config      TrainConfig and its sections, TOML + `--set` overrides
    align       contrastive alignment of the image tower to frozen reasoning-text embeddings
    compress    PCA D -> M and bucketed k-means to K basis vectors with scores
    fit         score definition: fine-tune the head on image-score pairs
    embeddings  cached image decoding and embedding extraction
    text_cache  cached frozen text-tower embeddings
    checkpoint  pickle-free alignment checkpoints
    pipeline    run_training(config, out_dir) -> bundle path
"""
