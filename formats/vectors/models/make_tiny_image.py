"""Write tiny-image.safetensors: a small fixed image model for the golden vectors and the tests.

    python formats/vectors/models/make_tiny_image.py

The golden image vectors name this model (by name and sha256), so they stay decodable whatever
happens to the bundled models. Its weights are random (seeded) and its prior is fitted on the
codes of samples/scene.png: it codes badly but exercises every step of the image codec (same
block structure as the bundled models: stride 16, residual VQ, factorized prior) in milliseconds.
The committed file is the reference; rerunning this script on another torch build may give
different bytes (hence a different sha256), so only rerun it on purpose.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vqcodec.entropy.priors import FactorizedPrior
from vqcodec.models.bundle import save_bundle
from vqcodec.models.config import ImageCodecConfig
from vqcodec.models.image import ImageCodec

HERE = Path(__file__).resolve().parent
NAME = "tiny-image"
CONFIG = ImageCodecConfig(
    encoder_channels=(8, 12, 16, 24),
    encoder_blocks=(0, 0, 1, 1),
    decoder_channels=(24, 16, 12, 8),
    decoder_blocks=(1, 1, 0, 0),
    latent_dim=16,
    codebook_size=64,
    num_quantizers=6,
    quality_stages=(1, 2, 4, 6),
    kmeans_init=False,
)


def build() -> Path:
    torch.manual_seed(20261124)
    network = ImageCodec(CONFIG).eval()
    with torch.no_grad():
        for module in network.modules():
            # the residual blocks start as the identity; give every conv real weights so the
            # transforms have their full receptive field (the tiling tests rely on it)
            if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                torch.nn.init.normal_(module.weight, std=0.3 / module.weight[0].numel() ** 0.5)
        for codebook in (p for n, p in network.named_buffers() if n.endswith("codebook")):
            codebook.normal_(std=0.5)
        scene = np.asarray(Image.open(HERE.parents[2] / "samples" / "scene.png").convert("RGB"))
        pixels = torch.from_numpy(scene.copy()).permute(2, 0, 1)[None].float() / 255
        codes = network.encode(pixels, CONFIG.num_quantizers)[0].numpy()
    prior = FactorizedPrior.fit([codes], (CONFIG.codebook_size,) * CONFIG.num_quantizers, smoothing=1.0)
    path = HERE / f"{NAME}.safetensors"
    digest = save_bundle(path, network, prior, CONFIG, "tiny random test model for golden vectors", name=NAME)
    print(f"wrote {path.name}: {path.stat().st_size} bytes, sha256 {digest.hex()}")
    return path


if __name__ == "__main__":
    build()
