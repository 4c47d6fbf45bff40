"""Calibration sets for quantization (light: heavy imports happen inside the functions)."""

from rali_edge.calibration.sets import DEFAULT_SIZE, CalibrationSet, build_calibration_set, from_pixels

__all__ = ["DEFAULT_SIZE", "CalibrationSet", "build_calibration_set", "from_pixels"]
