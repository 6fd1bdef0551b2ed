"""The speech gate: its decisions on real signals (silence, steady noise, tones, hum, spoken words, damaged audio),
its settings in the bundle manifest, and what it does to answers in `predict`, the CLI and the live pipeline."""
import json
import subprocess
import sys

import numpy as np
import pytest
from edgemm.runtimes import BundleError, load_bundle
from edgemm.runtimes.manifest import Manifest
from edgemm.runtimes.preprocess import AudioSpec, preprocess_audio, resample
from edgemm.runtimes.speech_gate import SpeechGate, SpeechGateConfig, SpeechGateError

RATE = 16000


def db(level: float) -> float:
    return 10 ** (level / 20)


@pytest.fixture(scope="module")
def word() -> np.ndarray:
    """A spoken "seven" at 16 kHz, peak 1."""
    pytest.importorskip("espeakng_loader")
    from edgemm.data.speech import Espeak, Voice

    espeak = Espeak.get()
    pcm = resample(espeak.say("seven", Voice("gmw/en+m3")).astype(np.float32) / 32768, espeak.sample_rate, RATE)
    return pcm / np.abs(pcm).max()


def speech(word: np.ndarray, peak_dbfs: float, seconds: float = 1.0, every_s: float | None = None) -> np.ndarray:
    """The word at `peak_dbfs` (every `every_s` seconds, else once at 0.2 s) over a quiet room (white noise at −75 dBFS)."""
    out = np.random.default_rng(0).standard_normal(int(seconds * RATE)) * db(-75)
    for start in np.arange(0.2, seconds, every_s or seconds) * RATE:
        piece = word[: len(out) - int(start)]
        out[int(start) : int(start) + len(piece)] += piece * db(peak_dbfs)
    return out.astype(np.float32)


def noise(colour: str, rms_dbfs: float, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(int(seconds * RATE)))
    spectrum /= np.maximum(np.arange(len(spectrum)), 1) ** {"white": 0, "pink": 0.5}[colour]
    x = np.fft.irfft(spectrum, int(seconds * RATE))
    return (x / np.sqrt(np.mean(x**2)) * db(rms_dbfs)).astype(np.float32)


def tones(freqs, amps=None) -> np.ndarray:
    t = np.arange(RATE) / RATE
    return sum(a * np.sin(2 * np.pi * f * t) for f, a in zip(freqs, amps or [1] * len(freqs))).astype(np.float32)


def decide(audio: np.ndarray, rate: int = RATE, spec: AudioSpec = AudioSpec()):
    """The gate's decision from the model's tensor; for a log-mel also from the energies its log was taken of (what
    predict() hands the gate): the same decision and measures."""
    gate = SpeechGate(SpeechGateConfig(), spec)
    tensor = preprocess_audio(audio, rate, spec)
    alone = gate.decide(tensor)
    if spec.features == "log-mel":
        energies = np.empty(spec.shape, np.float32)
        np.testing.assert_array_equal(preprocess_audio(audio, rate, spec, energies=energies), tensor)
        read = gate.decide(tensor, energies)
        assert (read.speech, read.reason.split(" (")[0]) == (alone.speech, alone.reason.split(" (")[0])
        np.testing.assert_allclose([read.range_db, read.level_dbfs, read.flatness_db], [alone.range_db, alone.level_dbfs, alone.flatness_db], atol=1e-3)
    return alone


# ----------------------------------------------------------------------------- decisions


@pytest.mark.parametrize("features", ["log-mel", "waveform"])
def test_silence_noise_tones_and_hum_are_not_speech(features):
    spec = AudioSpec(features=features)
    hum = tones([50 * k for k in range(1, 16)], [k**-1.0 for k in range(1, 16)]) * 0.1
    cases = {
        "digital silence": (np.zeros(RATE, np.int16), "silence"),
        "white noise −60 dBFS": (noise("white", -60), "steady sound"),
        "white noise −30 dBFS": (noise("white", -30), "steady sound"),
        "pink noise −40 dBFS": (noise("pink", -40), "steady sound"),
        "pink noise −6 dBFS": (noise("pink", -6), "steady sound"),
        "1 kHz tone −20 dBFS": (tones([1000]) * db(-20), "tonal"),
        "50 Hz hum with harmonics": (hum, "tonal"),
    }
    for name, (audio, reason) in cases.items():
        d = decide(audio, spec=spec)
        assert not d.speech and d.reason.startswith(reason), (name, d)
    assert decide(np.zeros(RATE, np.float32), spec=spec).level_dbfs == -100.0


@pytest.mark.parametrize("features", ["log-mel", "waveform"])
def test_speech_passes_from_quiet_to_loud(word, features):
    spec = AudioSpec(features=features)
    for peak in (-45, -20, -3):
        d = decide(speech(word, peak), spec=spec)
        assert d.speech and d.reason == "speech", (peak, d)
        assert peak - 20 < d.level_dbfs < peak, (peak, d.level_dbfs)  # the loudest 10 ms frames, below the peak sample
    in_noise = speech(word, -20) + noise("pink", -45)  # about 15 dB under the word's level
    assert decide(in_noise, spec=spec).speech


def test_a_threshold_out_of_range_is_a_clear_error():
    for field, value, span in [("threshold_db", 0, "(0, 40] dB"), ("threshold_db", 41.0, "(0, 40] dB"), ("threshold_db", float("nan"), "(0, 40] dB"),
                               ("floor_dbfs", 0.0, "[-100, 0) dBFS"), ("flatness_db", -61, "[-60, 0) dB")]:  # fmt: skip
        with pytest.raises(SpeechGateError, match="speech gate") as err:
            SpeechGateConfig(**{field: value})
        assert str(err.value) == f"speech gate {field} = {value!r} is outside its range {span}"
    with pytest.raises(SpeechGateError, match="threshold_db = '6'"):
        SpeechGateConfig.from_dict({"threshold_db": "6"})
    assert issubclass(SpeechGateError, ValueError)  # an InputError


# ----------------------------------------------------------------------------- the manifest


def test_the_manifest_keeps_the_settings_and_old_manifests_get_the_defaults(tiny_bundle):
    path = tiny_bundle / "manifest.json"
    data = json.loads(path.read_text())
    assert data["speech_gate"] == SpeechGateConfig().to_dict()  # written at export
    custom = SpeechGateConfig(threshold_db=9.5, floor_dbfs=-60, predict=True)
    manifest = Manifest.from_dict(data)
    manifest.speech_gate = custom
    assert Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))).speech_gate == custom
    del data["speech_gate"]  # a bundle written before the gate existed
    path.write_text(json.dumps(data))
    assert Manifest.read(tiny_bundle).speech_gate == SpeechGateConfig()
    data["speech_gate"] = {"threshold_db": 99}
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"speech gate threshold_db = 99 is outside its range \(0, 40\] dB"):
        Manifest.read(tiny_bundle)


# ----------------------------------------------------------------------------- answers


@pytest.fixture(scope="module")
def model(tiny_bundle_master):
    return load_bundle(tiny_bundle_master, threads=1)


@pytest.fixture(scope="module")
def digit(tiny_test_split) -> np.ndarray:
    return tiny_test_split.images[0]


def test_predict_reports_the_decision_and_gates_only_when_asked(model, word, digit):
    quiet_room = noise("white", -65)
    off = model.predict(image=digit, audio=quiet_room, sample_rate=RATE)  # the bundle's default: reported, not applied
    assert off.modalities == ("image", "audio") and not off.speech.speech and not off.gated
    on = model.predict(image=digit, audio=quiet_room, sample_rate=RATE, speech_gate=True)
    assert on.modalities == ("image",) and on.gated and on.label is not None
    assert on.to_dict()["speech_gate"] == {**on.speech.to_dict(), "gated": True} and on.speech.reason.startswith("steady sound")
    image_only = model.predict(image=digit)
    np.testing.assert_allclose(on.probabilities, image_only.probabilities, atol=1e-6)  # exactly the image-only answer
    spoken = model.predict(image=digit, audio=speech(word, -30), sample_rate=RATE, speech_gate=True)
    assert spoken.modalities == ("image", "audio") and spoken.speech.speech and not spoken.gated
    nothing = model.predict(audio=quiet_room, sample_rate=RATE, speech_gate=True)  # nothing left to answer from
    assert nothing.modalities == () and nothing.label is None and nothing.probabilities is None and nothing.gated
    assert nothing.to_dict()["label"] is None and nothing.to_dict()["modalities"] == []
    heard = model.predict(audio=quiet_room, sample_rate=RATE, speech_gate=False)
    assert heard.modalities == ("audio",) and heard.label is not None and not heard.speech.speech


def test_a_decision_read_later_is_the_one_on_its_own_audio(model, word, digit):
    """With the gate off, predict() leaves the decision to be made when it is read: after other answers it is still
    the decision on that answer's audio, as the gate on makes it."""
    audios = [speech(word, -20), noise("white", -65), np.zeros(RATE, np.float32), speech(word, -35)]
    later = [model.predict(image=digit, audio=a, sample_rate=RATE) for a in audios]
    batch = model.predict_batch([digit] * len(audios), audios, RATE)
    for a, p, b in zip(audios, later, batch):
        assert p.speech == b.speech == model.predict(image=digit, audio=a, sample_rate=RATE, speech_gate=True).speech
    assert [p.speech.speech for p in later] == [True, False, False, True]
    assert all(p.modalities == ("image", "audio") and not p.gated for p in later)


def test_a_batch_answers_each_sample_as_alone(model, word, digit):
    audios = [speech(word, -20), np.zeros(RATE, np.float32), noise("pink", -30), speech(word, -40)]
    images = [digit, digit, None, None]
    batch = model.predict_batch(images, audios, RATE, speech_gate=True)
    assert [p.modalities for p in batch] == [("image", "audio"), ("image",), (), ("audio",)]
    for p, image, audio in zip(batch, images, audios):
        alone = model.predict(image=image, audio=audio, sample_rate=RATE, speech_gate=True)
        assert alone.speech == p.speech and alone.label == p.label
        if p.probabilities is not None:
            np.testing.assert_allclose(alone.probabilities, p.probabilities, atol=1e-6)


def test_damaged_audio_gets_an_answer_never_a_crash(model, word, digit):
    """Clipped, DC offset, very quiet, 8 kHz telephone band, stereo out of phase, int16: with the gate on, an answer
    from image and audio when there is speech to hear, an image-only one when there is not."""
    loud = speech(word, -6)
    phone = resample(loud, RATE, 8000)
    cases = {
        "clipped": (np.clip(loud * db(20), -1, 1), RATE, True),
        "DC offset": (loud * 0.5 + 0.3, RATE, True),
        "8 kHz telephone band": (phone, 8000, True),
        "int16": ((loud * 32767).astype(np.int16), RATE, True),
        "stereo": (np.stack([loud, loud], 1), RATE, True),
        "stereo out of phase": (np.stack([loud, -loud], 1), RATE, False),  # mixes down to silence
        "very quiet (−85 dBFS peak)": (speech(word, -85), RATE, False),
        "very quiet int16 (±2 LSB)": ((speech(word, -6) * 2).astype(np.int16), RATE, False),
    }
    for name, (audio, rate, heard) in cases.items():
        for gate in (True, False):
            p = model.predict(image=digit, audio=audio, sample_rate=rate, speech_gate=gate)
            assert p.label is not None and p.speech.speech == heard, (name, p.speech)
            assert p.modalities == (("image", "audio") if heard or not gate else ("image",)), name


def test_the_bundle_setting_turns_the_gate_on_in_predict(tiny_bundle, digit):
    path = tiny_bundle / "manifest.json"
    data = json.loads(path.read_text())
    data["speech_gate"]["predict"] = True
    path.write_text(json.dumps(data))
    model = load_bundle(tiny_bundle, threads=1)
    assert model.predict(image=digit, audio=np.zeros(RATE, np.float32), sample_rate=RATE).modalities == ("image",)
    assert model.predict(image=digit, audio=np.zeros(RATE, np.float32), sample_rate=RATE, speech_gate=False).modalities == ("image", "audio")
    model.set_speech_gate(threshold_db=40)  # for this session only
    assert model.speech_gate.config.threshold_db == 40 and Manifest.read(tiny_bundle).speech_gate.threshold_db == 6
    with pytest.raises(SpeechGateError, match=r"threshold_db = 40.5 is outside its range \(0, 40\] dB"):
        model.set_speech_gate(threshold_db=40.5)


# ----------------------------------------------------------------------------- CLI and live app


def test_cli_prints_the_decision_and_refuses_a_bad_threshold(tiny_bundle_master, tmp_path, digit):
    from edgemm.runtimes.media import write_audio, write_image

    write_image(tmp_path / "d.png", np.repeat(digit[:, :, None], 3, axis=2))
    write_audio(tmp_path / "hiss.wav", noise("white", -50), RATE)
    run = [sys.executable, "-m", "edgemm", "predict", str(tiny_bundle_master), "--image", str(tmp_path / "d.png"), "--audio", str(tmp_path / "hiss.wav")]
    out = subprocess.run([*run, "--speech-gate"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "speech gate: no speech: steady sound (range" in out.stdout and "the audio is left out" in out.stdout and "from image;" in out.stdout
    bad = subprocess.run([*run, "--speech-threshold", "45"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == ["edgemm: error: speech gate threshold_db = 45.0 is outside its range (0, 40] dB"]
    live = subprocess.run([sys.executable, "-m", "edgemm.apps.live", str(tiny_bundle_master), "--camera", "none", "--mic", str(tmp_path / "hiss.wav"),
                           "--headless", "--speech-threshold", "0"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert live.returncode == 2 and live.stderr.strip().splitlines() == ["edgemm live: error: speech gate threshold_db = 0.0 is outside its range (0, 40] dB"]


@pytest.fixture
def video(tmp_path):
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(tmp_path / "v.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    for _ in range(90):  # 3 s
        writer.write(np.full((48, 64, 3), 128, np.uint8))
    writer.release()
    return tmp_path / "v.avi"


def live_run(model, video, wav, **kw):
    from edgemm.runtimes.live import LivePipeline, VirtualTimeline
    from edgemm.runtimes.live.microphone import FileMicrophone

    timeline, events = VirtualTimeline(), []
    pipeline = LivePipeline(model, timeline, camera=str(video), mic=FileMicrophone(wav, timeline), sinks=[events.append], realtime=False, **kw)
    return pipeline.run(), events


def test_live_silent_mic_gives_gated_image_only_answers_and_speech_fused_ones(model, word, video, tmp_path):
    soundfile = pytest.importorskip("soundfile")
    soundfile.write(str(tmp_path / "room.wav"), noise("white", -60, seconds=3), RATE)
    soundfile.write(str(tmp_path / "talk.wav"), speech(word, -20, seconds=3, every_s=0.6), RATE)
    summary, events = live_run(model, video, tmp_path / "room.wav")  # the gate is on by default in the live app
    heard = [e for e in events if e.prediction.speech is not None]  # once a whole window has arrived
    assert summary.speech_gate and heard and summary.gated == len(heard)
    assert all(e.prediction.modalities == ("image",) and e.to_dict()["speech_gate"]["gated"] for e in heard)
    assert summary.image_only == summary.answers and "no speech heard in" in summary.line()
    summary, events = live_run(model, video, tmp_path / "room.wav", speech_gate=False)
    assert not summary.speech_gate and summary.gated == 0 and any(e.prediction.modalities == ("image", "audio") for e in events)
    summary, events = live_run(model, video, tmp_path / "talk.wav")
    heard = [e for e in events if e.prediction.speech is not None]
    assert heard and summary.gated == 0 and all(e.prediction.modalities == ("image", "audio") and e.prediction.speech.speech for e in heard)
