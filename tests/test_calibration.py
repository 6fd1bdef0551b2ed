"""Calibration sets from real files: pairing, skips counted by reason, sizes, stratification, streams."""
import warnings

import numpy as np
import pytest
from edgemm.calibration import (
    CalibrationError,
    SmallCalibrationWarning,
    from_arrays,
    from_csv,
    from_folder,
    from_stream,
)
from edgemm.calibration.sets import select
from edgemm.runtimes.contract import ModelContract
from edgemm.runtimes.media import write_audio, write_image
from edgemm.runtimes.preprocess import AudioSpec, ImageSpec, preprocess_image

LABELS = [str(d) for d in range(10)]
DIGITS = ModelContract(image=ImageSpec(), audio=AudioSpec(), labels=tuple(LABELS))  # the built-in interface


@pytest.fixture
def messy_folder(tmp_path, tiny_test_split):
    s = tiny_test_split
    root = tmp_path / "calib"
    for i in range(6):
        d = root / str(s.labels[i])
        d.mkdir(parents=True, exist_ok=True)
        write_image(d / f"s{i}.png", s.images[i])
        write_audio(d / f"s{i}.wav", s.audio[i], 16000)
    write_image(root / "lonely.png", s.images[7])  # unpaired image
    write_audio(root / "orphan.wav", s.audio[8], 16000)  # unpaired audio
    write_image(root / "corrupt.png", s.images[9])
    (root / "corrupt.wav").write_bytes(b"RIFF....not audio")  # paired but unreadable
    write_image(root / "slow.png", s.images[10])
    write_audio(root / "slow.wav", s.audio[10][::2], 8000)  # another sample rate
    (root / "notes.txt").write_text("not media")
    return root


def test_folder_with_bad_files_counts_skips(messy_folder):
    with pytest.warns(SmallCalibrationWarning, match="only 6 calibration samples"):
        calib = from_folder(messy_folder, DIGITS)
    assert len(calib) == 6 and calib.image.shape == (6, 1, 32, 32) and calib.audio.shape == (6, 1, 40, 98)
    assert calib.labelled  # labels from the class-named parent folders
    skipped = calib.report.skipped
    assert skipped["unpaired image"] == 1 and skipped["unpaired audio"] == 1
    assert skipped["unreadable file"] == 1 and skipped["sample rate 8000 Hz, not 16000"] == 1
    assert skipped["not an image or audio file"] == 1
    assert calib.report.to_dict()["used"] == 6


def test_empty_or_useless_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="no usable calibration samples"):
        from_folder(tmp_path / "empty", DIGITS)
    with pytest.raises(CalibrationError, match="not a folder"):
        from_folder(tmp_path / "missing", DIGITS)


def test_csv_source(messy_folder, tiny_test_split):
    label = str(tiny_test_split.labels[0])
    csv = messy_folder / "list.csv"
    csv.write_text(f"image,audio,label\n{label}/s0.png,{label}/s0.wav,{label}\nlonely.png,nowhere.wav,1\nlonely.png,orphan.wav,eleven\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallCalibrationWarning)
        calib = from_csv(csv, DIGITS)
    assert len(calib) == 1 and calib.labels[0] == int(label)
    assert calib.report.skipped["missing file"] == 1
    assert calib.report.skipped["label 'eleven' not in the model's labels"] == 1


def test_stream_source(tmp_path, tiny_test_split):
    import cv2

    s = tiny_test_split
    fps, seconds = 10, 3
    writer = cv2.VideoWriter(str(tmp_path / "rec.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 64))
    for i in range(fps * seconds):
        frame = cv2.resize(s.images[i // fps], (64, 64))
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    write_audio(tmp_path / "rec.wav", np.concatenate(s.audio[:seconds]), 16000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallCalibrationWarning)
        calib = from_stream(tmp_path / "rec.mp4", DIGITS, size=12)
    assert len(calib) == 12 and not calib.labelled
    # the frame at t = 2.x s shows image 2, decoded through OpenCV
    expect = preprocess_image(cv2.resize(s.images[2], (64, 64)), ImageSpec())
    assert min(np.abs(calib.image[i] - expect).mean() for i in range(len(calib))) < 0.2
    (tmp_path / "rec.wav").unlink()
    with pytest.raises(CalibrationError, match="no audio file of the same name"):
        from_stream(tmp_path / "rec.mp4", DIGITS)


def test_stratified_selection_and_default_size(tiny_test_split):
    labels = np.repeat(np.arange(10), 50)
    chosen = select(labels, 300)
    assert len(chosen) == 300 and np.bincount(labels[chosen]).tolist() == [30] * 10
    s = tiny_test_split
    with pytest.warns(SmallCalibrationWarning):
        calib = from_arrays(s.images, s.audio, 16000, DIGITS, s.labels, "split", size=50)
    assert len(calib) == 50 and np.bincount(calib.labels).min() == 5
    assert len(calib.feeds()) == 150  # fused, image-only and audio-only per sample
