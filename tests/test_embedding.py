"""Embedding models: verification by cosine similarity and nearest-neighbour agreement instead of argmax, and
answers from enrolled examples (a gallery of labelled image/sound files) — numpy and real files, no torch."""
import numpy as np
import pytest
from edgemm.runtimes.gallery import EnrollmentError, enroll_folder
from edgemm.runtimes.media import write_audio, write_image
from edgemm.runtimes.reference import ReferenceSet
from edgemm.runtimes.verification import compare, cosine_rows

CLASSES, PER_CLASS, DIM = 4, 15, 16


def clustered(labelled: bool, seed: int = 0) -> tuple[ReferenceSet, np.ndarray]:
    """A reference set of an embedding model: tight clusters, one per class, in every modality pattern."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CLASSES, DIM)).astype(np.float32) * 3
    labels = np.repeat(np.arange(CLASSES), PER_CLASS)
    vectors = np.concatenate([centres[labels] + 0.05 * rng.standard_normal((len(labels), DIM)).astype(np.float32)] * 3)
    image, audio = np.zeros((len(labels), 1, 2, 2), np.float32), np.zeros((len(labels), 1, 4), np.float32)
    reference = ReferenceSet.build(lambda i, a, p: {"embedding": vectors[: len(p)]}, image, audio, labels if labelled else np.full(len(labels), -1))
    return reference, vectors


@pytest.mark.parametrize("labelled", [True, False])
def test_embedding_verdicts_by_cosine_and_neighbours(labelled):
    reference, vectors = clustered(labelled)
    rng = np.random.default_rng(1)
    assert reference.output == "embedding" and reference.logits is None
    exact = compare(vectors, reference, "fp32")
    assert exact["passed"] and exact["min_cosine"] >= 0.9999 and exact["top1_agreement"] == 1.0

    jitter = vectors + 0.3 * rng.standard_normal(vectors.shape).astype(np.float32)  # neighbours inside a cluster reshuffle
    assert np.mean(cosine_rows(jitter, vectors)) > 0.99
    int8 = compare(jitter, reference, "int8", max_drop=1.0)
    assert int8["passed"], int8  # a neighbour of the same tight cluster answers alike
    assert int8["top1_agreement_by_mode"]["fused"] >= 0.98
    fp32 = compare(jitter, reference, "fp32")
    assert not fp32["passed"] and "min cosine to the reference" in fp32["reason"]

    swapped = vectors.copy()
    swapped[: PER_CLASS // 2] = vectors[PER_CLASS * 2 : PER_CLASS * 2 + PER_CLASS // 2]  # half of class 0 lands in class 2's cluster
    broken = compare(swapped, reference, "int8", max_drop=1.0)
    assert not broken["passed"] and "mean cosine" in broken["reason"] and "nearest-neighbour agreement" in broken["reason"]
    if labelled:
        assert broken["drop_points"] > 1.0 and "accuracy" in broken["reason"]


def test_reference_set_of_an_embedding_model_round_trips(tmp_path):
    reference, _ = clustered(True)
    reference.save(tmp_path / "reference.npz")
    back = ReferenceSet.load(tmp_path / "reference.npz")
    assert back.logits is None and np.array_equal(back.embedding, reference.embedding) and back.output == "embedding"


def test_gallery_answers_with_the_nearest_enrolled_label(tmp_path):
    """Examples read from real PNG/WAV files under FOLDER/<label>/; the embedding here: mean colour and loudness."""
    colours = {"red": (200, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 200)}
    for label, rgb in colours.items():
        for k in range(2):
            folder = tmp_path / "enroll" / label
            folder.mkdir(parents=True, exist_ok=True)
            write_image(folder / f"{k}.png", np.full((8, 8, 3), rgb, np.uint8))
            write_audio(folder / f"{k}.wav", (np.sin(np.arange(800) / (3 + k)) * 8000).astype(np.int16), 8000)
    write_image(tmp_path / "enroll" / "loose.png", np.zeros((8, 8, 3), np.uint8))  # not in a label folder
    (tmp_path / "enroll" / "blue" / "2.png").write_bytes(b"not a png")  # unreadable

    def embed(image, audio, rate):
        colour = image.reshape(-1, 3).mean(0) / 255 if image is not None else np.zeros(3)
        return np.append(colour, 0.0 if audio is None else np.abs(audio).mean() / 32768).astype(np.float32)

    warnings = []
    gallery = enroll_folder(tmp_path / "enroll", embed, warnings.append)
    assert gallery.labels == ("blue", "green", "red") and len(gallery.vectors) == 6
    assert any("loose.png" in w and "label folder" in w for w in warnings) and any("2.png" in w for w in warnings)
    query = np.array([[0.8, 0.1, 0.1, 0.1], [0.1, 0.1, 0.9, 0.1]], np.float32)
    sims = gallery.similarities(query)
    assert [gallery.labels[k] for k in sims.argmax(1)] == ["red", "blue"] and sims.shape == (2, 3)
    (tmp_path / "empty" / "red").mkdir(parents=True)
    with pytest.raises(EnrollmentError, match="no usable labelled examples"):
        enroll_folder(tmp_path / "empty", embed)
    with pytest.raises(EnrollmentError, match="not a folder"):
        enroll_folder(tmp_path / "missing", embed)
