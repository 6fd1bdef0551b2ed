"""Calibration sets for INT8 quantization, read through the runtime's own preprocessing."""
