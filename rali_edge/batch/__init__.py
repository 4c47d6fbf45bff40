"""Batch scoring of image collections of any size, locally or on a Ray cluster, with any artifact.

One core (`core.BatchScorer`: read, decode, preprocess, run) serves both engines: `local.LocalEngine`
(a thread pool decodes ahead while the runner runs batches) and `ray_engine.RayEngine` (the same core
inside Ray Data actors). `inputs` turns files, folders, list files and URIs into one sorted path list;
`writers` writes rows (path, score, error) to parquet part folders, CSV or JSON, with the artifact's
checksum as metadata; `api.score_collection` ties them together and `drift` runs `validate` on Ray.
Nothing here is imported by `import rali_edge`; Ray and pyarrow are imported only where used.
"""
