"""One module per export format, named by `FormatCaps.backend` in `rali_edge.export.formats`.

Each exposes `export_float(job: ExportJob) -> ExportResult` (the format's own float export,
validated, written atomically) and `export_quantized(job, qjob, float_path, scratch) -> ExportResult`
(turn the float artifact made by the format's `float_source` into the job's precision).
"""
