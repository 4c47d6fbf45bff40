"""The benchmark table: every column, every status, and a reason wherever a number is missing."""

from __future__ import annotations

from rali_edge.report.table import COLUMNS, BenchmarkRow, Status, markdown_table, plain_table, row_cells


def test_every_column_in_header_and_rows(sample_rows):
    md = markdown_table(sample_rows())
    header = md.splitlines()[0]
    for col in COLUMNS:
        assert f" {col} " in header
    assert COLUMNS == ("Format", "Precision", "Status", "Size (MB)", "PLCC", "SRCC", "dPLCC", "dSRCC", "ms/img", "img/s")
    for line in md.splitlines()[2:]:
        # escaped pipes do not count as separators
        assert line.replace("\\|", "").count("|") == len(COLUMNS) + 1


def test_every_status_appears_with_its_reason(sample_rows):
    rows = sample_rows()
    assert {r.status for r in rows} == set(Status)
    text = plain_table(rows)
    assert "ok" in text
    assert "exported, validation failed (dPLCC -0.0600 < -0.0200)" in text
    assert "export failed (opset 18 unsupported by the mobile converter)" in text
    assert "not runnable here (TensorRT needs a CUDA GPU + TensorRT)" in text
    assert "simulated (accuracy from simulated FP16)" in text


def test_missing_numbers_show_reason_not_a_number(sample_rows):
    rows = {(r.format, r.precision): r for r in sample_rows()}
    trt = row_cells(rows["tensorrt", "fp16"])
    ms, ips = trt[COLUMNS.index("ms/img")], trt[COLUMNS.index("img/s")]
    assert ms == ips == "TensorRT needs a CUDA GPU + TensorRT"
    assert trt[COLUMNS.index("PLCC")] == "TensorRT needs a CUDA GPU + TensorRT"
    coreml = row_cells(rows["coreml", "fp16"])
    assert coreml[COLUMNS.index("ms/img")] == "Core ML prediction needs macOS"
    assert coreml[COLUMNS.index("PLCC")] == "0.9100"       # simulated accuracy is a number
    failed = row_cells(rows["ort", "fp32"])
    assert failed[COLUMNS.index("Size (MB)")] == "opset 18 unsupported by the mobile converter"


def test_numbers_formatted(sample_rows):
    cells = row_cells(sample_rows()[1])
    assert cells[COLUMNS.index("dPLCC")] == "-0.0600"
    assert cells[COLUMNS.index("ms/img")] == "1.10"
    assert cells[COLUMNS.index("img/s")] == "900.0"


def test_row_to_dict_round_trips_json(sample_rows):
    import json

    for row in sample_rows():
        d = json.loads(json.dumps(row.to_dict()))
        assert d["status"] == row.status.value
        assert set(d) >= {"format", "precision", "status", "reason", "size_mb", "plcc", "srcc", "dplcc", "dsrcc",
                          "ms_per_img", "img_per_s"}


def test_short_reason_keeps_the_head_and_notes_keep_the_rest(sample_rows):
    from rali_edge.report.table import notes, short_reason

    full = ("TensorRT needs a CUDA GPU + TensorRT (the tensorrt Python package is not installed); "
            "build the engine on the target")
    assert short_reason(full) == "TensorRT needs a CUDA GPU + TensorRT"
    assert len(short_reason("x" * 200)) == 60 and short_reason("x" * 200).endswith("…")
    row = BenchmarkRow("tensorrt", "fp16", Status.NOT_RUNNABLE, reason=short_reason(full), detail=full)
    assert notes([row]) == [f"tensorrt fp16: {full}"]
    assert notes(sample_rows()) == []   # no detail beyond the cell: no note
