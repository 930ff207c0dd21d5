"""Golden vectors: every file in formats/vectors/manifest.json reads as the manifest says.

``VQCODEC_REGEN=1`` regenerates the valid container vectors first (on purpose, after a format
change); a normal run only reads them, and checks that it wrote nothing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from test_container.helpers import REPO, VECTORS, Pipe
from vqcodec import errors
from vqcodec.cli import main
from vqcodec.container import ContainerReader, Header


def _generator():
    spec = importlib.util.spec_from_file_location("vqc_vectors_generate", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mtimes() -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(VECTORS.glob("*.vqc"))} | {
        "manifest.json": (VECTORS / "manifest.json").stat().st_mtime_ns
    }


if os.environ.get("VQCODEC_REGEN") == "1":
    _generator().main(["--kind", "container", "--valid-only"])

MTIMES_AT_START = _mtimes()
MANIFEST = json.loads((VECTORS / "manifest.json").read_text())
ENTRIES = {e["file"]: e for e in MANIFEST["vectors"]}
CONTAINER = sorted(name for name, e in ENTRIES.items() if e["kind"] == "container")


def test_manifest_lists_every_vector_file_and_nothing_else():
    assert sorted(p.name for p in VECTORS.glob("*.vqc")) == sorted(ENTRIES)
    assert len(CONTAINER) >= 30
    assert {e["valid"] for e in ENTRIES.values()} == {True, False}


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_vector_bytes_match_the_manifest(name):
    data = (VECTORS / name).read_bytes()
    assert len(data) == ENTRIES[name]["size"]
    assert hashlib.sha256(data).hexdigest() == ENTRIES[name]["sha256"]


def _frame_record(frame) -> dict:
    return {
        "index": frame.index,
        "key": frame.key,
        "size": len(frame.payload),
        "sha256": hashlib.sha256(frame.payload).hexdigest(),
        "side_chunks": [[t.decode(), hashlib.sha256(d).hexdigest()] for t, d in frame.side_chunks],
    }


def _expected_header(fields: dict) -> Header:
    return Header(
        **{
            **fields,
            "model_sha256": bytes.fromhex(fields["model_sha256"]),
            "codec_params": bytes.fromhex(fields["codec_params"]),
        }
    )


@pytest.mark.parametrize("name", CONTAINER)
@pytest.mark.parametrize("source", ["path", "pipe"])
def test_container_vector_reads_as_the_manifest_says(name, source):
    expect = ENTRIES[name]["expect"]
    path = VECTORS / name
    src = path if source == "path" else Pipe(path.read_bytes(), step=13)
    if expect["error"] is not None:
        error = getattr(errors, expect["error"])
        frames = []
        with pytest.raises(error) as info:
            with ContainerReader(src) as reader:
                assert expect["at"] == "frames", "the reader opened a file that must fail at open"
                for frame in reader.frames():
                    frames.append(frame)
        assert type(info.value) is error
        if expect["at"] == "frames":
            assert len(frames) == expect["frames_before_error"]
        if "field" in expect:
            assert info.value.field == expect["field"]
        return
    with ContainerReader(src) as reader:
        assert "{}.{}".format(*reader.version) == expect["version"]
        assert reader.header == _expected_header(expect["header"])
        assert [_frame_record(f) for f in reader.frames()] == expect["frames"]
        assert reader.frame_count == expect["frame_count"]
        assert [c.type for c in reader.skipped_chunks] == expect["skipped_chunks"]
        assert [list(c) for c in reader.trailing_chunks] == expect["trailing_chunks"]
        if source == "path" and expect["frame_count"]:
            key_map = reader.key_frames()
            assert [k.frame_index for k in key_map.keys] == expect["key_frames"]
            assert key_map.source == ("index" if expect["index"] else "scan")
            for target in range(expect["frame_count"]):
                key = max(k for k in expect["key_frames"] if k <= target)
                assert reader.seek(target) == key
                assert next(iter(reader.frames())).index == key


CODEC_VALID = sorted(n for n, e in ENTRIES.items() if e["valid"] and e["kind"] != "container")


@pytest.mark.parametrize("name", CODEC_VALID)
def test_codec_vectors_are_valid_containers(name):
    with ContainerReader(VECTORS / name) as reader:
        assert len(list(reader.frames())) >= 1


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_info_works_on_every_vector(name, capsys):
    path = str(VECTORS / name)
    valid = ENTRIES[name]["valid"]
    assert main(["info", path]) == (0 if valid else 1)
    out, err = capsys.readouterr()
    assert name in out and ("status        valid" in out) == valid
    assert err.count("\n") == (0 if valid else 1) and (valid or err.startswith("vqcodec: error: "))
    assert main(["info", "--json", path]) == (0 if valid else 1)
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is valid and (report["error"] is None) == valid
    if valid and ENTRIES[name]["kind"] == "container":
        expect = ENTRIES[name]["expect"]
        assert report["frame_count"] == expect["frame_count"] and report["key_frames"] == expect["key_frames"]
        assert report["header"]["width"] == expect["header"]["width"]


def test_info_reads_stdin_and_prints_one_line_errors():
    data = (VECTORS / "video_streamed.vqc").read_bytes()
    cmd = [sys.executable, "-m", "vqcodec", "info", "-"]
    done = subprocess.run(cmd, input=data, capture_output=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert b"frames        7 (end chunk); header: 0 (unknown, streamed)" in done.stdout
    done = subprocess.run(cmd, input=data[:-30], capture_output=True, cwd=REPO, timeout=60)
    assert done.returncode == 1
    assert done.stderr.decode().count("\n") == 1 and done.stderr.startswith(b"vqcodec: error: stream ended")
    assert b"frame 6" in done.stdout  # everything readable was shown first


def test_generator_reproduces_the_container_vectors_byte_for_byte():
    generator = _generator()
    vectors = generator.all_vectors(["container"])
    assert sorted(f"{v['name']}.vqc" for v in vectors) == CONTAINER
    for vector in vectors:
        data, expect = vector["build"]()
        entry = generator.entry(vector, data, expect)
        assert json.loads(json.dumps(entry)) == ENTRIES[entry["file"]], entry["file"]
        assert data == (VECTORS / entry["file"]).read_bytes(), (
            f"{entry['file']}: the writer no longer produces this golden vector; if the format changed on "
            "purpose, regenerate with VQCODEC_REGEN=1 and explain why in the commit"
        )


def test_check_mode_writes_nothing_and_a_normal_run_rewrote_nothing():
    assert _generator().main(["--kind", "container", "--check"]) == 0
    if os.environ.get("VQCODEC_REGEN") != "1":
        assert _mtimes() == MTIMES_AT_START


def test_container_import_does_not_import_torch_or_numpy():
    code = (
        "import sys, io, vqcodec.container, vqcodec.cli.info\n"
        "from vqcodec.cli import main\n"
        "assert main(['info', '--json', sys.argv[1]]) == 0\n"
        "heavy = sorted(m for m in ('torch', 'numpy') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    args = [sys.executable, "-c", code, str(VECTORS / "video_gop.vqc")]
    done = subprocess.run(args, capture_output=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
