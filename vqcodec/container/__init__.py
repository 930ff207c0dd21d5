"""The .vqc container: header, frame chunks, index, end chunk (formats/vqc-v1.md).

Pure Python: no torch, no numpy, so any machine can inspect and validate a file.

- ``Header``: the media description (frozen dataclass, validated on construction).
- ``ContainerWriter(dst, header)``: ``write_frame(payload, key=)``, ``write_chunk(type, data)``,
  ``close()``; never seeks.
- ``ContainerReader(src)``: ``.header``, ``frames()`` -> ``Frame(index, key, payload, side_chunks)``,
  ``seek(i)``, ``chunks()`` -> ``ChunkInfo``, ``key_frames()``.
- ``limits``: the process-wide ``Limits`` (max_pixels, max_chunk_length, max_frame_count,
  max_header_length) that readers and writers use unless given their own.
"""

from __future__ import annotations

from vqcodec.container import spec
from vqcodec.container.chunks import ChunkInfo, encode_chunk
from vqcodec.container.header import Header
from vqcodec.container.index import KeyFrame, KeyFrameMap, gop_lengths
from vqcodec.container.reader import ContainerReader, EndInfo, Frame
from vqcodec.container.spec import Limits, limits
from vqcodec.container.writer import ContainerWriter

__all__ = [
    "ChunkInfo",
    "ContainerReader",
    "ContainerWriter",
    "EndInfo",
    "Frame",
    "Header",
    "KeyFrame",
    "KeyFrameMap",
    "Limits",
    "encode_chunk",
    "gop_lengths",
    "limits",
    "spec",
]
