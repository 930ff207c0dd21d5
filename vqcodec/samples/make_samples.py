"""Render the small inputs in samples/ (deterministic; rerun to regenerate them).

- ``scene.png``: 256x192 RGB still life rendered procedurally (gradients, discs,
  stripes, a checkerboard and fine texture), so it has both flat areas and detail.
- ``scene_gray.png`` and ``scene_rgba.png``: the same scene as L and RGBA.
- ``orbit.y4m``: 96x64, 24 frames, 4:2:0, 24 fps: discs orbiting over a drifting background.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent


def render_scene(width: int, height: int, t: float = 0.0, seed: int = 7) -> np.ndarray:
    """(H, W, 3) uint8 scene at time ``t`` (frames of the clip differ only by t)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = x / width, y / height
    img = np.stack([0.25 + 0.6 * v, 0.45 + 0.3 * u, 0.85 - 0.5 * v], axis=-1)
    stripes = 0.5 + 0.5 * np.sin((x + 40 * t) * 0.35 + 3 * np.sin(y * 0.05))
    band = (v > 0.62) & (v < 0.8)
    img[band] = img[band] * 0.5 + 0.5 * stripes[band, None] * np.array([0.9, 0.6, 0.2])
    checker = ((x // 12 + y // 12) % 2).astype(np.float32)
    box = (u > 0.06) & (u < 0.3) & (v > 0.08) & (v < 0.42)
    img[box] = (0.15 + 0.7 * checker[box])[:, None]
    for i, (cx, cy, r, col) in enumerate(
        [
            (0.55, 0.3, 0.14, (0.9, 0.2, 0.2)),
            (0.78, 0.45, 0.1, (0.2, 0.8, 0.3)),
            (0.4, 0.55, 0.08, (1, 1, 0.3)),
        ]
    ):
        ang = t * (0.6 + 0.3 * i)
        cx2, cy2 = cx + 0.05 * np.cos(ang), cy + 0.05 * np.sin(ang)
        d = np.sqrt(((u - cx2) * width) ** 2 + ((v - cy2) * height) ** 2) / (r * height)
        disc = np.clip(1.5 - 1.5 * d, 0, 1)[..., None] ** 0.5
        shade = 0.6 + 0.4 * np.clip(1 - d, 0, 1)[..., None]
        img = img * (1 - disc) + disc * np.array(col) * shade
    grain = rng.normal(0, 0.02, size=(height, width, 1)).astype(np.float32)
    img = img + grain * (v[..., None] > 0.8)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def rgb_to_yuv420(rgb: np.ndarray) -> bytes:
    """BT.601 limited-range 4:2:0 planes of an (H, W, 3) uint8 frame, as Y4M stores them."""
    f = rgb.astype(np.float32)
    yy = 16 + 0.257 * f[..., 0] + 0.504 * f[..., 1] + 0.098 * f[..., 2]
    cb = 128 - 0.148 * f[..., 0] - 0.291 * f[..., 1] + 0.439 * f[..., 2]
    cr = 128 + 0.439 * f[..., 0] - 0.368 * f[..., 1] - 0.071 * f[..., 2]
    h, w = yy.shape
    cb = cb.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    cr = cr.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return b"".join(np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes() for p in (yy, cb, cr))


def main() -> None:
    scene = render_scene(256, 192)
    Image.fromarray(scene).save(HERE / "scene.png", optimize=True)
    Image.fromarray(scene).convert("L").save(HERE / "scene_gray.png", optimize=True)
    alpha = np.linspace(255, 64, 256, dtype=np.float32)[None, :].repeat(192, 0).astype(np.uint8)
    rgba = np.dstack([scene, alpha])
    Image.fromarray(rgba, "RGBA").save(HERE / "scene_rgba.png", optimize=True)
    w, h, n = 96, 64, 24
    with open(HERE / "orbit.y4m", "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F24:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(n):
            f.write(b"FRAME\n" + rgb_to_yuv420(render_scene(w, h, t=i / 4)))


if __name__ == "__main__":
    main()
