"""Calibration sets for INT8 quantization, read through the runtime's own preprocessing and readers.

Sources: in-memory samples of a data set, a folder of paired files, a CSV list, a recorded stream.
Default 300 samples, class-stratified where labels exist; a warning under 100, an error at 0.
"""
from .files import from_csv, from_folder, from_stream, skipped_summary
from .sets import (
    DEFAULT_SIZE,
    CalibrationError,
    CalibrationReport,
    CalibrationSet,
    SmallCalibrationWarning,
    from_arrays,
)

__all__ = [
    "DEFAULT_SIZE",
    "CalibrationError",
    "CalibrationReport",
    "CalibrationSet",
    "SmallCalibrationWarning",
    "from_arrays",
    "from_csv",
    "from_folder",
    "from_stream",
    "skipped_summary",
]
