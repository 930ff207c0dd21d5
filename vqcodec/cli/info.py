"""``vqcodec info FILE [--json]``: header, chunk list with sizes and CRC status, GOP structure.

Works on damaged files too: everything readable is printed, then the error is raised so the
dispatcher prints it as one line and exits 1. Imports no torch (container layer only).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from vqcodec.container import ChunkInfo, ContainerReader, gop_lengths, spec
from vqcodec.errors import VQCError

PRIMARIES = {1: "BT.709/sRGB", 2: "unspecified", 5: "BT.601 625", 6: "BT.601 525", 9: "BT.2020", 12: "P3-D65"}
TRANSFERS = {1: "BT.709", 2: "unspecified", 6: "BT.601", 8: "linear", 13: "sRGB", 16: "PQ", 18: "HLG"}
MATRICES = {0: "RGB", 1: "BT.709", 2: "unspecified", 5: "BT.601 625", 6: "BT.601 525", 9: "BT.2020"}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "info",
        help="show the header, chunks and GOP structure of a .vqc file",
        description="Show the header, the chunk list (offset, type, length, CRC) and the GOP structure of "
        "a .vqc file, checking every chunk; a damaged file is shown up to the damage, then the error. "
        "FILE may be - for stdin.",
    )
    p.add_argument("file", metavar="FILE", help=".vqc file to inspect (- for stdin)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--no-chunks", action="store_true", help="leave out the per-chunk table")
    p.set_defaults(func=run)


def inspect(src: Any) -> tuple[dict[str, Any], BaseException | None]:
    """Everything readable about ``src`` as a JSON-able dict, and the error that stopped reading."""
    report: dict[str, Any] = {"file": src if isinstance(src, str) else getattr(src, "name", None)}
    if isinstance(src, str) and src != "-":
        report["size"] = os.path.getsize(src)
    chunks: list[ChunkInfo] = []
    error: BaseException | None = None
    try:
        with ContainerReader(src) as reader:
            report["version"] = "{}.{}".format(*reader.version)
            report["header"] = reader.header.to_dict()
            try:
                for info in reader.chunks():
                    chunks.append(info)
            except VQCError as exc:
                error = exc
            frames = [c for c in chunks if c.type == "FRAM" and c.crc_ok]
            keys = [c.frame_index for c in frames if c.key]
            count = reader.end.frame_count if reader.end is not None else len(frames)
            report["frame_count"] = count
            report["frame_count_source"] = "end chunk" if reader.end is not None else "frames read"
            report["key_frames"] = keys
            report["gop_lengths"] = gop_lengths([k for k in keys if k is not None], count) if keys else []
            report["payload_bytes"] = sum(c.length - 5 for c in frames)
            indexes = [c for c in chunks if c.type == "indx"]
            report["index"] = {"offset": indexes[0].offset, "length": indexes[0].length} if indexes else None
            report["skipped_chunks"] = [c.type for c in reader.skipped_chunks]
            report["trailing_bytes"] = reader.trailing_bytes
    except VQCError as exc:
        error = exc
        if "version" not in report and isinstance(src, str) and src != "-":
            with open(src, "rb") as f:  # the header failed: show the version if the preamble is sound
                preamble = f.read(spec.PREAMBLE_SIZE)
            if len(preamble) == spec.PREAMBLE_SIZE and preamble.startswith(spec.MAGIC):
                report["version"] = "{}.{}".format(*spec.PREAMBLE.unpack(preamble)[1:])
    report["chunks"] = [_chunk_dict(c) for c in chunks]
    report["valid"] = error is None
    report["error"] = None if error is None else f"{type(error).__name__}: {error}"
    return report, error


def _chunk_dict(c: ChunkInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "offset": c.offset,
        "type": c.type,
        "length": c.length,
        "crc": "ok" if c.crc_ok else "bad",
        "critical": c.critical,
        "known": c.known,
    }
    if c.frame_index is not None:
        out["frame_index"] = c.frame_index
        out["key"] = c.key
    return out


def run(args: argparse.Namespace) -> int:
    report, error = inspect(args.file)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report, chunks=not args.no_chunks), end="")
    sys.stdout.flush()
    if error is not None:
        raise error
    return 0


def format_report(report: dict[str, Any], *, chunks: bool = True) -> str:
    lines: list[str] = []
    size = f"{report['size']} bytes" if report.get("size") is not None else "stream"
    title = f"{report['file']}: {size}"
    if "version" in report:
        title += f", vqc {report['version']}"
    lines.append(title)
    if "header" in report:
        lines += _header_lines(report)
    if chunks and report["chunks"]:
        lines.append("")
        lines.append(f"  {'offset':>10}  {'type':4}  {'length':>10}  crc  content")
        for c in report["chunks"]:
            row = f"  {c['offset']:>10}  {c['type']:4}  {c['length']:>10}  {c['crc']:3}"
            lines.append(f"{row}  {_content(c)}")
    if "header" in report:
        lines.append("")
        lines += _structure_lines(report)
    return "\n".join(lines) + "\n"


def _header_lines(report: dict[str, Any]) -> list[str]:
    h = report["header"]
    media = f"{h['media']} {h['width']}x{h['height']}, {h['channels']} channels, {h['pixel_format']}"
    rows = [("media", media)]
    if h["media"] == "video":
        fps = h["fps_num"] / h["fps_den"]
        rows.append(("frame rate", f"{h['fps_num']}/{h['fps_den']} ({fps:.3f} fps)"))
    declared = h["frame_count"]
    frames = f"{report.get('frame_count', '?')} ({report.get('frame_count_source', '?')}); header: "
    frames += f"{declared}" if declared else "0 (unknown, streamed)"
    rows.append(("frames", frames))
    rows.append(
        (
            "colour",
            f"primaries {h['primaries']} ({PRIMARIES.get(h['primaries'], '?')}), "
            f"transfer {h['transfer']} ({TRANSFERS.get(h['transfer'], '?')}), "
            f"matrix {h['matrix']} ({MATRICES.get(h['matrix'], '?')}), "
            f"{'full' if h['full_range'] else 'limited'} range",
        )
    )
    sha = h["model_sha256"]
    rows.append(("model", f"{h['model_name'] or '(none)'}  sha256 {sha if sha.strip('0') else '(none)'}"))
    rows.append(("quality", str(h["quality"])))
    params = bytes.fromhex(h["codec_params"])
    text = h.get("codec_params_text")
    shown = (text if len(text) <= 200 else text[:200] + "...") if text is not None else params[:32].hex()
    rows.append(("codec params", f"{len(params)} bytes" + (f": {shown}" if params else "")))
    return [f"  {name:<13} {value}" for name, value in rows]


def _content(c: dict[str, Any]) -> str:
    if c["type"] == "FRAM":
        text = f"frame {c['frame_index']}{' key' if c['key'] else ''}"
        return text if c["crc"] == "ok" else f"{text} (damaged: fields not trustworthy)"
    kind = "critical" if c["critical"] else "ancillary"
    if not c["known"]:
        return f"unknown {kind} chunk"
    return spec.CHUNK_TYPES.get(c["type"].encode(), f"{kind} side chunk")


def _structure_lines(report: dict[str, Any]) -> list[str]:
    rows = []
    keys = report.get("key_frames", [])
    gops = report.get("gop_lengths", [])
    if report["header"]["media"] == "video":
        shown = ", ".join(map(str, keys[:20])) + (", ..." if len(keys) > 20 else "")
        rows.append(("key frames", f"{len(keys)}: {shown}" if keys else "0"))
        if gops:
            mean = sum(gops) / len(gops)
            rows.append(("GOP lengths", f"min {min(gops)}, max {max(gops)}, mean {mean:.1f}"))
    rows.append(("payload", f"{report.get('payload_bytes', 0)} bytes in frames"))
    index = report.get("index")
    if index:
        entries = (index["length"] - 4) // 12
        noun = "entry" if entries == 1 else "entries"
        rows.append(("index", f"{entries} {noun} at offset {index['offset']}"))
    else:
        rows.append(("index", "none"))
    if report.get("skipped_chunks"):
        rows.append(("skipped", ", ".join(report["skipped_chunks"]) + " (unknown ancillary)"))
    if report.get("trailing_bytes"):
        rows.append(("trailing", f"{report['trailing_bytes']} bytes after the end chunk"))
    rows.append(("status", "valid" if report["valid"] else "INVALID"))
    return [f"  {name:<13} {value}" for name, value in rows]
