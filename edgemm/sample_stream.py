"""The built-in sample stream for `edgemm live`: a video of test-split digit images and a WAV of the
matching spoken digits on one timeline, with ground truth, so a live run can report its accuracy.

Each digit is one segment of SEGMENT_S seconds: its image fills the frame for the whole segment and its
1 s spoken clip starts SPEECH_OFFSET_S into it. An answer is scored when its frame time falls in the
segment's settled window (SCORED_S), where the 1 s audio window ending at the frame lies inside the
segment and holds (nearly) the whole clip."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgemm.data.avdigits import SAMPLE_RATE, AVDigitsConfig, load_split
from edgemm.runtimes.errors import MediaReadError
from edgemm.runtimes.paths import cache_root

FPS = 30
SEGMENT_S = 1.5
SPEECH_OFFSET_S = 0.25
SCORED_S = (1.1, 1.4)
SCALE = 4  # 28 px digits → 112 px, centred in a 4:3 frame (the model's centre crop sees just the digit)
VERSION = 2  # 2: the raw samples for the offline comparison travel with the stream


@dataclass
class SampleStream:
    video: Path
    audio: Path
    truth: Path  # ground truth JSON; names the .npz of raw samples for the offline comparison


def sample_stream(segments: int = 40, seed: int = 0, config: AVDigitsConfig = AVDigitsConfig(), root: Path | None = None) -> SampleStream:
    """Write (once; cached) the sample video, its WAV and the ground truth; returns their paths."""
    folder = (root or cache_root()) / f"sample-stream-v{VERSION}-{segments}-{seed}"
    stream = SampleStream(folder / "sample.avi", folder / "sample.wav", folder / "sample.json")
    if stream.truth.is_file():
        return stream
    import cv2
    import soundfile

    test = load_split("test", config)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(test), size=segments, replace=False)
    side = 28 * SCALE
    width = side * 4 // 3
    folder.mkdir(parents=True, exist_ok=True)
    tmp_video = folder / ".sample.tmp.avi"
    writer = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (width, side))
    if not writer.isOpened():
        raise MediaReadError(f"{tmp_video}: OpenCV cannot write an MJPG video here")
    per_segment = round(SEGMENT_S * FPS)
    track = np.zeros(round(segments * SEGMENT_S * SAMPLE_RATE), np.int16)
    truth = []
    for k, i in enumerate(picks):
        digit = cv2.resize(test.images[i], (side, side), interpolation=cv2.INTER_LINEAR)
        frame = np.zeros((side, width, 3), np.uint8)
        frame[:, (width - side) // 2 : (width - side) // 2 + side] = digit[:, :, None]
        for _ in range(per_segment):
            writer.write(frame)
        start = round((k * SEGMENT_S + SPEECH_OFFSET_S) * SAMPLE_RATE)
        track[start : start + len(test.audio[i])] = test.audio[i]
        truth.append({"start_s": k * SEGMENT_S, "label": str(int(test.labels[i])), "test_index": int(i)})
    writer.release()
    tmp_audio = folder / ".sample.tmp.wav"
    soundfile.write(str(tmp_audio), track, SAMPLE_RATE, subtype="PCM_16")
    tmp_video.replace(stream.video)
    tmp_audio.replace(stream.audio)
    tmp_offline = folder / ".sample.tmp.npz"
    with open(tmp_offline, "wb") as fh:  # the raw test samples, exactly aligned: what the model scores offline
        np.savez_compressed(fh, images=test.images[picks], audio=test.audio[picks], sample_rate=SAMPLE_RATE)
    tmp_offline.replace(folder / "sample.npz")
    meta = {"fps": FPS, "segment_s": SEGMENT_S, "speech_offset_s": SPEECH_OFFSET_S, "scored_s": list(SCORED_S),
            "offline_samples": "sample.npz", "segments": truth}  # fmt: skip
    tmp_truth = folder / ".sample.tmp.json"
    tmp_truth.write_text(json.dumps(meta, indent=1))
    tmp_truth.replace(stream.truth)
    return stream


def use_sample_stream(args) -> None:
    """`edgemm live --sample`: point parsed live-app arguments at the built-in sample stream."""
    stream = sample_stream()
    args.camera, args.mic, args.truth = str(stream.video), str(stream.audio), str(stream.truth)
