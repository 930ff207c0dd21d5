"""Codes from real images before a trained codec exists: residual VQ on PCA'd pixel patches.

16x16 RGB patches (stride 16, like a codec latent grid) are projected on their top PCA
components and quantized by a residual k-means (numpy only).  Fitted on ../shared/data/train
(never on Kodak); Kodak is only encoded.  Results are cached under ~/.cache/vqcodec-bench.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VQCODEC_DATA", REPO.parent / "shared" / "data"))
CACHE = Path(os.environ.get("VQCODEC_BENCH_CACHE", Path.home() / ".cache" / "vqcodec-bench"))
PATCH = 16


def _load(path: Path, max_side: int) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = max_side / max(im.size)
        if scale < 1:
            im = im.resize((max(PATCH, round(im.width * scale)), max(PATCH, round(im.height * scale))),
                           Image.Resampling.LANCZOS)
        return np.asarray(im, dtype=np.float32) / 255.0


def _patches(img: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    h, w = img.shape[0] // PATCH, img.shape[1] // PATCH
    x = img[: h * PATCH, : w * PATCH].reshape(h, PATCH, w, PATCH, 3).transpose(0, 2, 1, 3, 4)
    return x.reshape(h * w, -1), (h, w)


def train_images(limit: int) -> list[Path]:
    root = DATA / "train"
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    step = max(1, len(files) // limit)
    return files[::step][:limit]


def kodak_images() -> list[Path]:
    return sorted((DATA / "kodak").glob("*.png"))


def _kmeans(x: np.ndarray, k: int, iters: int, rng: np.random.Generator) -> np.ndarray:
    centers = x[rng.choice(len(x), k, replace=False)].copy()
    for _ in range(iters):
        labels = assign(x, centers)
        sums = np.zeros_like(centers)
        np.add.at(sums, labels, x)
        counts = np.bincount(labels, minlength=k)
        dead = counts == 0
        centers[~dead] = sums[~dead] / counts[~dead, None]
        centers[dead] = x[rng.choice(len(x), int(dead.sum()), replace=False)]
    return centers


def assign(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    c2 = (centers * centers).sum(1)
    out = np.empty(len(x), dtype=np.int64)
    for i in range(0, len(x), 8192):
        out[i : i + 8192] = np.argmin(c2[None, :] - 2 * x[i : i + 8192] @ centers.T, axis=1)
    return out


class PatchRVQ:
    def __init__(self, mean: np.ndarray, basis: np.ndarray, codebooks: list[np.ndarray]):
        self.mean, self.basis, self.codebooks = mean, basis, codebooks

    @classmethod
    def fit(cls, images: list[np.ndarray], stages: int, k: int, dims: int, seed: int = 0) -> PatchRVQ:
        rng = np.random.default_rng(seed)
        x = np.concatenate([_patches(im)[0] for im in images])
        mean = x.mean(0)
        sample = x[rng.choice(len(x), min(len(x), 40000), replace=False)] - mean
        _, _, vt = np.linalg.svd(sample, full_matrices=False)
        basis = vt[:dims].T.astype(np.float32)
        z = (x - mean) @ basis
        if len(z) > 120000:
            z = z[rng.choice(len(z), 120000, replace=False)]
        books = []
        for _ in range(stages):
            c = _kmeans(z, k, 10, rng)
            z = z - c[assign(z, c)]
            books.append(c)
        return cls(mean, basis, books)

    def codes(self, img: np.ndarray) -> np.ndarray:
        """(S, H/16, W/16) codes of one image."""
        x, (h, w) = _patches(img)
        z = (x - self.mean) @ self.basis
        out = []
        for c in self.codebooks:
            idx = assign(z, c)
            z = z - c[idx]
            out.append(idx.reshape(h, w))
        return np.stack(out)


def _model_key(stages: int, k: int, dims: int, train_limit: int, max_side: int) -> str:
    return hashlib.sha256(f"{stages}-{k}-{dims}-{train_limit}-{max_side}-v1".encode()).hexdigest()[:16]


def fitted_model(stages: int = 4, k: int = 1024, dims: int = 64, train_limit: int = 120,
                 max_side: int = 768) -> tuple[PatchRVQ, list[np.ndarray]]:
    """The patch RVQ fitted on train images (cached) and the train images' codes."""
    path = CACHE / f"patch_rvq_model_{_model_key(stages, k, dims, train_limit, max_side)}.npz"
    if path.exists():
        z = np.load(path)
        model = PatchRVQ(z["mean"], z["basis"], [z[f"book_{i}"] for i in range(stages)])
        return model, [z[f"train_{i}"].astype(np.int64) for i in range(int(z["train_n"]))]
    train = [_load(p, max_side) for p in train_images(train_limit)]
    model = PatchRVQ.fit(train, stages, k, dims)
    codes = [model.codes(im) for im in train]
    CACHE.mkdir(parents=True, exist_ok=True)
    arrays = {f"train_{i}": c.astype(np.int16) for i, c in enumerate(codes)}
    arrays.update({f"book_{i}": b for i, b in enumerate(model.codebooks)})
    np.savez_compressed(path, mean=model.mean, basis=model.basis, train_n=np.array(len(codes)), **arrays)
    return model, codes


def real_codes(stages: int = 4, k: int = 1024, dims: int = 64, train_limit: int = 120,
               max_side: int = 768) -> dict[str, list[np.ndarray]]:
    """{"train": [(S, h, w)], "kodak": [(S, h, w)]}; fitted on train images, cached."""
    path = CACHE / f"patch_rvq_{_model_key(stages, k, dims, train_limit, max_side)}.npz"
    if path.exists():
        z = np.load(path)
        return {name: [z[f"{name}_{i}"].astype(np.int64) for i in range(int(z[f"{name}_n"]))]
                for name in ("train", "kodak")}
    model, train = fitted_model(stages, k, dims, train_limit, max_side)
    result = {"train": train, "kodak": [model.codes(_load(p, 10**6)) for p in kodak_images()]}
    arrays = {f"{name}_{i}": c.astype(np.int16) for name, lst in result.items() for i, c in enumerate(lst)}
    arrays.update({f"{name}_n": np.array(len(lst)) for name, lst in result.items()})
    np.savez_compressed(path, **arrays)
    return result


def video_frames(path: Path, max_frames: int) -> list[np.ndarray]:
    """Up to max_frames RGB frames in [0, 1] of a video file (PyAV)."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24").astype(np.float32) / 255.0)
            if len(frames) >= max_frames:
                break
    return frames


def video_codes(folder: str, max_clips: int, max_frames: int, **model_args: int) -> list[list[np.ndarray]]:
    """Codes (S, h, w) per frame per clip of the videos in DATA/folder (image-fitted patch RVQ)."""
    files = sorted(p for p in (DATA / folder).iterdir() if p.suffix in (".mkv", ".y4m", ".h264", ".mp4"))
    tag = f"{folder}-{max_clips}-{max_frames}-{sorted(model_args.items())}"
    key = hashlib.sha256(tag.encode()).hexdigest()[:16]
    path = CACHE / f"video_codes_{key}.npz"
    if path.exists():
        z = np.load(path)
        return [[z[f"c{i}_{j}"].astype(np.int64) for j in range(int(z[f"n{i}"]))]
                for i in range(int(z["clips"]))]
    model, _ = fitted_model(**model_args)
    clips = []
    for f in files[:max_clips]:
        try:
            frames = video_frames(f, max_frames)
        except Exception:  # a clip PyAV cannot read is skipped
            continue
        if frames and min(frames[0].shape[:2]) >= 4 * PATCH:
            clips.append([model.codes(fr) for fr in frames])
    arrays = {f"c{i}_{j}": c.astype(np.int16) for i, clip in enumerate(clips) for j, c in enumerate(clip)}
    arrays.update({f"n{i}": np.array(len(clip)) for i, clip in enumerate(clips)})
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, clips=np.array(len(clips)), **arrays)
    return clips
