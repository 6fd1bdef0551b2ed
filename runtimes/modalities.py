"""The modalities a sample can carry and the ways a sample can reach the model."""

MODALITIES = ("image", "audio")
# The `present` rows of the three ways a sample can reach the model; shared by training, calibration,
# verification and reports.
MODALITY_PATTERNS = {"fused": (1.0, 1.0), "image_only": (1.0, 0.0), "audio_only": (0.0, 1.0)}
