"""The one evaluation core behind `validate`, `benchmark` and `eval`.

- `evalset.load_eval_sets`: meta files -> preprocessed uint8 pixels + ground truth per dataset;
- `measure.measure_artifact`: run any artifact through its `rali_edge.runtime` runner (or, where its
  runtime is absent, the format's simulator; or say why it cannot run) on those pixels;
- `measure.drift_rows`: the per-dataset drift rows against the float reference;
- `budget.DriftBudget`: the one budget check that turns rows into gate failures.
"""
