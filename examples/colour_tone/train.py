"""Train the example model on DATA/train and save its weights as safetensors (what edgemm loads).

Inputs are prepared by the contract in model.yaml through edgemm's own preprocessing, so training sees
exactly what the exported model is fed on a device. A third of the batches drop the image or the audio
(zeros, as the contract's `missing: zeros` feeds them), so the model also answers from one modality.

    python train.py DATA weights.safetensors [--epochs 12]
"""
from __future__ import annotations

import argparse
import wave
from pathlib import Path

import cv2
import numpy as np
import torch
from edgemm.runtimes.preprocess import preprocess_audio, preprocess_image
from models import LABELS, build
from safetensors.torch import save_file

from edgemm import load_spec

HERE = Path(__file__).parent


def load(folder: Path, contract) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rgb, wave, labels) tensors of every <label>/<n>.png + .wav pair under `folder`."""
    rgb, waves, labels = [], [], []
    for png in sorted(folder.glob("*/*.png")):
        with wave.open(str(png.with_suffix(".wav"))) as w:
            samples = np.frombuffer(w.readframes(w.getnframes()), np.int16)
            rate = w.getframerate()
        rgb.append(preprocess_image(cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB), contract.image))
        waves.append(preprocess_audio(samples, rate, contract.audio))
        labels.append(LABELS.index(png.parent.name))
    return torch.from_numpy(np.stack(rgb)), torch.from_numpy(np.stack(waves)), torch.tensor(labels)


def accuracy(model, rgb, waves, labels, keep=(1.0, 1.0)) -> float:
    with torch.no_grad():
        return float((model(rgb * keep[0], waves * keep[1]).argmax(1) == labels).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    torch.manual_seed(0)
    contract = load_spec(HERE / "model.yaml")
    rgb, waves, labels = load(args.data / "train", contract)
    val = load(args.data / "val", contract)
    model = build()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    for epoch in range(args.epochs):
        model.train()
        for batch in torch.randperm(len(labels)).split(32):
            keep = [(1.0, 1.0), (1.0, 0.0), (0.0, 1.0)][int(torch.randint(0, 3, ()))] if epoch else (1.0, 1.0)
            loss = torch.nn.functional.cross_entropy(model(rgb[batch] * keep[0], waves[batch] * keep[1]), labels[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        print(f"epoch {epoch + 1}: val accuracy fused {accuracy(model, *val):.3f}, image only {accuracy(model, *val, keep=(1, 0)):.3f}, "
              f"audio only {accuracy(model, *val, keep=(0, 1)):.3f}")  # fmt: skip
    save_file(model.state_dict(), str(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
