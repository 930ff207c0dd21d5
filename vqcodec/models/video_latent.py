"""Video payload version 1 (formats/vqc-v1.md, "Video frame payload"): the frame bitstream of a
latent-residual video model, owned here so that the codec's encoder and decoder and the training
recipe (which fits its tables on what the encoder emits) run one implementation.

:class:`TemporalCoder` codes one frame's latents given the decoder's previous latents and modes
(the reference state): ``encode_intra`` / ``decode_intra`` for key frames (the image RVQ's codes
under the image prior), ``encode_inter`` / ``decode_inter`` for P frames (a mode per latent
position, then residual or intra codes, under the model's integer tables). It works on latents
only; pixels, tiling, the container and the GOP are the codec layer's (``vqcodec.codec.video``).

Shapes: latents (1, C, h, w); image codes (1, h, w, S); residual codes (1, h, w, R); modes
(counts) (1, h, w) int64 in 0..R + 1.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np
import torch

from vqcodec.entropy.coder import CodingTables, SymbolDecoder, encode_batches
from vqcodec.errors import FormatError, ModelMismatchError
from vqcodec.models.image import ImageCodec
from vqcodec.models.video import TABLE_PRECISION, VideoCodec, count_contexts
from vqcodec.quantize.kmeans import greedy_residual_codes

#: first byte of every video frame payload
FRAME_INTRA, FRAME_INTER = 0, 1

_CODERS: weakref.WeakKeyDictionary[Any, TemporalCoder] = weakref.WeakKeyDictionary()
_CODERS_LOCK = threading.Lock()


def _int_table(table: Any) -> np.ndarray:
    """An integer frequency table (a model buffer) as an int64 numpy array."""
    return np.asarray(torch.as_tensor(table).to(torch.int64).numpy())


class TemporalCoder:
    """Everything one model needs to code frames: networks, integer tables, bit costs.

    Built once per CodecModel and cached on it (read-only afterwards, so several encoders
    and decoders may share it).
    """

    def __init__(self, codec_model: Any):
        network = codec_model.network
        if isinstance(network, VideoCodec):
            self.net = network.eval()
        elif isinstance(network, ImageCodec):
            self.net = VideoCodec.from_image(network)
        else:
            raise TypeError(f"model {codec_model.name!r} is neither an image nor a video codec")
        if codec_model.prior is None:
            raise ModelMismatchError(f"model {codec_model.name!r} has no entropy prior")
        self.model = codec_model
        self.prior = codec_model.prior
        cfg = self.net.config
        self.stages = cfg.residual_stages
        self.stride = int(cfg.stride)
        count_freqs = _int_table(self.net.count_freqs)
        residual_freqs = _int_table(self.net.residual_freqs)
        intra_freqs = _int_table(self.net.intra_freqs)
        self.num_contexts = count_freqs.shape[0]
        # one table set: mode rows, then residual-stage rows, then intra image-stage rows
        self.intra_offset = self.num_contexts + self.stages
        parts = (count_freqs, residual_freqs, intra_freqs)
        freqs = np.zeros((sum(f.shape[0] for f in parts), max(f.shape[1] for f in parts)), dtype=np.int64)
        row = 0
        for f in parts:
            freqs[row : row + f.shape[0], : f.shape[1]] = f
            row += f.shape[0]
        self.tables = CodingTables(freqs)
        self._residual_tables = [
            self.net.residual.stage(j).codebook.detach().float() for j in range(self.stages)
        ]
        self._residual_norms = [(t * t).sum(1) for t in self._residual_tables]
        quantizer = self.net.image.quantizer
        self._image_tables = [
            quantizer.stage(i).codebook.detach().float() for i in range(quantizer.num_quantizers)
        ]
        self._image_norms = [(t * t).sum(1) for t in self._image_tables]
        self._plain_search = all(
            quantizer.stage(i).project_in is None for i in range(quantizer.num_quantizers)
        ) and all(self.net.residual.stage(j).project_in is None for j in range(self.stages))
        scale = float(1 << TABLE_PRECISION)
        with np.errstate(divide="ignore"):
            self.count_bits = torch.from_numpy(-np.log2(count_freqs / scale)).float()
            self.residual_bits = torch.from_numpy(-np.log2(residual_freqs / scale)).float()
            self.intra_bits = torch.from_numpy(-np.log2(intra_freqs / scale)).float()

    @staticmethod
    def for_model(codec_model: Any) -> TemporalCoder:
        """The coder of ``codec_model``, built once per model (thread-safe: two threads asking at
        once get the same object; the cache holds no model alive)."""
        with _CODERS_LOCK:
            coder = _CODERS.get(codec_model)
            if coder is None:
                coder = TemporalCoder(codec_model)
                _CODERS[codec_model] = coder
            return coder

    # -- intra ------------------------------------------------------------------------------
    def intra_latents(self, codes: torch.Tensor) -> torch.Tensor:
        """Image codes (1, h, w, S) -> latents (1, C, h, w): what the decoder reconstructs."""
        return self.net.image.quantizer.decode(codes)

    def encode_intra(self, y: torch.Tensor, quality: int) -> tuple[bytes, torch.Tensor, float, float]:
        """Latents -> (payload, yhat, distortion, lambda) for a key frame at ``quality``.

        lambda = -dD/dR of the image RVQ around this quality's stage count, measured on this
        frame: it prices P-frame bits at the key frame's own RD slope.
        """
        cfg = self.net.config
        levels = cfg.quality_levels
        stages = cfg.stages_for_quality(quality)
        lo = cfg.stages_for_quality(quality - 1) if quality > 1 else 0
        hi = cfg.stages_for_quality(quality + 1) if quality < levels else stages
        quantizer = self.net.image.quantizer
        all_codes = quantizer.encode(y, hi)  # (1, h, w, hi)
        codes = all_codes[..., :stages]
        yhat = self.intra_latents(codes)
        body = self.prior.encode(codes[0].permute(2, 0, 1).numpy().astype(np.int32))
        payload = bytes([FRAME_INTRA]) + body
        distortion = float(((y - yhat) ** 2).sum())
        # cumulative distortion at lo and hi stages, from the per-stage vectors
        flat_codes = all_codes.reshape(-1, hi)
        target = y.permute(0, 2, 3, 1).reshape(-1, y.shape[1])
        recon = torch.zeros_like(target)
        d = {0: float((target**2).sum())}
        for i in range(hi):
            recon = recon + quantizer.stage(i).vectors_from_codes(flat_codes[:, i])
            d[i + 1] = float(((target - recon) ** 2).sum())
        bits_per_code = 8.0 * len(body) / max(1, codes.numel())
        if hi > lo:
            lam = (d[lo] - d[hi]) / ((hi - lo) * flat_codes.shape[0] * bits_per_code)
        else:
            lam = d[stages] / max(1.0, stages * flat_codes.shape[0] * bits_per_code)
        return payload, yhat, distortion, max(lam, 1e-12)

    def decode_intra(self, body: bytes, shape: tuple[int, int, int]) -> torch.Tensor:
        codes = self.prior.decode(body, shape=shape)
        codes = np.asarray(codes)
        if codes.shape != shape:
            raise FormatError(
                f"key frame decoded to codes {codes.shape}, expected {shape}", field="frame payload"
            )
        if codes.size and (int(codes.min()) < 0 or int(codes.max()) >= self.net.config.codebook_size):
            raise FormatError("key frame codes outside the codebook", field="frame payload")
        tensor = torch.from_numpy(codes.astype(np.int64)).permute(1, 2, 0)[None]
        return self.intra_latents(tensor)

    # -- inter ------------------------------------------------------------------------------
    def encode_inter(
        self,
        y: torch.Tensor,
        previous: torch.Tensor,
        previous_counts: torch.Tensor,
        lam: float,
        intra_stages: int,
        collect: list[Any] | None = None,
    ) -> tuple[bytes, torch.Tensor, torch.Tensor, float]:
        """Latents, previous decoded latents and modes -> (payload, yhat, modes, D + lam * bits).

        Per position the mode is the residual stage count 0..R or R + 1 (intra with the image
        RVQ's first ``intra_stages`` stages), whichever minimises squared latent error + lam * bits.
        ``collect``: when a list, (contexts (h*w,), modes (h*w,), residual codes (h*w, R), intra
        codes (h*w, S)) of the frame is appended to it (the training recipe fits tables on these).
        """
        big_r = self.stages
        residual = y - previous
        # the searches also return what is left after each stage: the candidates' errors
        codes, residual_left = self.residual_codes(residual)  # (1, h, w, R), R x (1, h, w)
        intra_codes, intra_left = self.image_codes(y, intra_stages)
        errors = [(residual**2).sum(dim=1), *residual_left, intra_left[-1]]
        error = torch.stack(errors)  # (R + 2, 1, h, w)
        contexts = count_contexts(previous_counts, big_r)  # (1, h, w)
        count_bits = self.count_bits[contexts].permute(3, 0, 1, 2)  # (R + 2, 1, h, w)
        code_bits = torch.stack([self.residual_bits[j][codes[..., j]] for j in range(big_r)])
        intra_bits = sum(self.intra_bits[s][intra_codes[..., s]] for s in range(intra_stages))
        bits = count_bits + torch.cat(
            [torch.zeros_like(code_bits[:1]), code_bits.cumsum(0), torch.as_tensor(intra_bits)[None]]
        )
        cost = error + lam * bits
        counts = cost.argmin(dim=0)  # (1, h, w)
        yhat = self.net.apply_residual(previous, codes, counts, intra_codes)
        flat_counts = counts.reshape(-1)
        flat_codes = codes.reshape(-1, big_r)
        flat_intra = intra_codes.reshape(-1, intra_stages)
        symbols, tables = self._symbols(flat_counts, flat_codes, flat_intra)
        context_rows = contexts.reshape(-1).numpy()
        body = encode_batches([(flat_counts.numpy(), context_rows), (symbols, tables)], self.tables)
        payload = bytes([FRAME_INTER]) + body
        if collect is not None:
            collect.append((context_rows, flat_counts.numpy(), flat_codes.numpy(), flat_intra.numpy()))
        distortion = float(error.gather(0, counts[None]).sum())
        return payload, yhat, counts, distortion + lam * 8.0 * len(payload)

    def _symbols(
        self, counts: torch.Tensor, codes: torch.Tensor, intra: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """The second batch of a P frame: residual codes stage by stage, then intra codes."""
        big_r = self.stages
        symbols, tables = [], []
        for j in range(big_r):
            used = (counts > j) & (counts <= big_r)
            symbols.append(codes[used, j].numpy())
            tables.append(np.full(int(used.sum()), self.num_contexts + j, dtype=np.int64))
        fresh = counts == big_r + 1
        for s in range(intra.shape[1]):
            symbols.append(intra[fresh, s].numpy())
            tables.append(np.full(int(fresh.sum()), self.intra_offset + s, dtype=np.int64))
        return np.concatenate(symbols).astype(np.int64), np.concatenate(tables)

    def image_codes(self, y: torch.Tensor, stages: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Image RVQ codes (1, h, w, stages) of latents (1, C, h, w) by plain argmin (encoder only),
        and the squared error (1, h, w) left after each stage."""
        if not self._plain_search:
            return self._checked(self.net.image.quantizer, y, stages)
        return self._greedy(y, self._image_tables[:stages], self._image_norms[:stages])

    def residual_codes(self, residual: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Greedy residual-VQ codes (1, h, w, R) of residual latents (1, C, h, w), and the squared
        error (1, h, w) left after each stage.

        A plain matmul/argmin search: only the encoder runs it and the decoder follows whatever
        codes it picks, so the quantizer's exact tie-breaking (kept for bit-identical image codes
        across machines) is not needed here and its cost is saved.
        """
        if not self._plain_search:
            return self._checked(self.net.residual, residual, self.stages)
        return self._greedy(residual, self._residual_tables, self._residual_norms)

    @staticmethod
    def _checked(
        quantizer: Any, latents: torch.Tensor, stages: int
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        codes = quantizer.encode(latents, stages)
        left = [
            ((latents - quantizer.decode(codes[..., : k + 1])) ** 2).sum(dim=1)
            for k in range(codes.shape[-1])
        ]
        return codes, left

    @staticmethod
    def _greedy(
        latents: torch.Tensor, tables: list[torch.Tensor], norms: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        _, c, h, w = latents.shape
        codes, left = greedy_residual_codes(latents.permute(0, 2, 3, 1).reshape(-1, c), tables, norms)
        return codes.reshape(1, h, w, len(tables)), [e.reshape(1, h, w) for e in left.unbind(1)]

    def decode_inter(
        self, body: bytes, previous: torch.Tensor, previous_counts: torch.Tensor, intra_stages: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """P-frame body + previous latents/modes -> (latents, modes)."""
        big_r = self.stages
        _, _, h, w = previous.shape
        contexts = count_contexts(previous_counts, big_r).reshape(-1).numpy()
        decoder = SymbolDecoder(body, self.tables)
        flat_counts = decoder.decode(contexts).astype(np.int64)
        if flat_counts.size and int(flat_counts.max()) > big_r + 1:
            raise FormatError("position mode above R + 1", field="frame payload")
        predicted = flat_counts <= big_r
        fresh = ~predicted
        per_stage = [int(((flat_counts > j) & predicted).sum()) for j in range(big_r)]
        num_fresh = int(fresh.sum())
        tables = np.concatenate(
            [np.full(n, self.num_contexts + j, dtype=np.int64) for j, n in enumerate(per_stage)]
            + [np.full(num_fresh, self.intra_offset + s, dtype=np.int64) for s in range(intra_stages)]
        )
        symbols = decoder.decode(tables).astype(np.int64)
        decoder.finish()
        flat_codes = np.zeros((h * w, big_r), dtype=np.int64)
        start = 0
        for j, n in enumerate(per_stage):
            flat_codes[(flat_counts > j) & predicted, j] = symbols[start : start + n]
            start += n
        intra_codes = None
        if num_fresh:
            flat_intra = np.zeros((h * w, intra_stages), dtype=np.int64)
            for s in range(intra_stages):
                flat_intra[fresh, s] = symbols[start : start + num_fresh]
                start += num_fresh
            intra_codes = torch.from_numpy(flat_intra.reshape(1, h, w, intra_stages))
        counts = torch.from_numpy(flat_counts.reshape(1, h, w))
        codes = torch.from_numpy(flat_codes.reshape(1, h, w, big_r))
        return self.net.apply_residual(previous, codes, counts, intra_codes), counts


def key_counts(height: int, width: int, stages: int) -> torch.Tensor:
    """The count map that follows a key frame: R + 1 everywhere (its own context)."""
    return torch.full((1, height, width), stages + 1, dtype=torch.int64)


__all__ = ["FRAME_INTER", "FRAME_INTRA", "TemporalCoder", "key_counts"]
