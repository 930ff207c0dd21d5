"""The CLI as users meet it: safe default names, early output checks, checks before torch,
threads, short options, terminals and pipes, batch reports, honest targets, refused inputs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError
from test_codec.image_helpers import TINY_MODEL, picture

from vqcodec.cli import main

M = str(TINY_MODEL)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(picture(32, 40, 3, seed=3)).save(path)
    return path


@pytest.fixture
def vqc(photo):
    out = photo.with_suffix(".vqc")
    assert main(["encode", str(photo), str(out), "-q", "2", "--model", M, "--quiet"]) == 0
    return out


class FakeTerminal(io.StringIO):
    """A text stream that says it is a terminal, with a binary buffer behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = io.BytesIO()

    def isatty(self) -> bool:
        return True


# --- item 5: the default decode name ---------------------------------------------------------


def test_default_decode_name_is_never_the_source(photo, vqc, capsys):
    original = photo.read_bytes()
    assert main(["decode", str(vqc), "--model", M]) == 0
    target = vqc.parent / "photo.vqc.png"
    assert target.is_file() and f"-> {target}" in capsys.readouterr().out
    assert photo.read_bytes() == original
    # even with -f the default name cannot reach the original
    assert main(["decode", str(vqc), "--model", M, "-f", "--quiet"]) == 0
    assert photo.read_bytes() == original
    # a batch without -o names each output the same way, beside its input
    second = vqc.parent / "second.vqc"
    second.write_bytes(vqc.read_bytes())
    assert main(["decode", str(vqc), str(second), "--model", M, "-f", "--quiet"]) == 0
    assert (vqc.parent / "second.vqc.png").is_file() and photo.read_bytes() == original


# --- item 7: the destination is checked first, and named ---------------------------------------


def test_output_errors_come_before_the_work_and_name_the_output(photo, vqc, tmp_path, capsys, monkeypatch):
    import vqcodec.codec.image as image_codec

    def no_work(*args, **kwargs):
        raise AssertionError("the codec ran before the output was checked")

    monkeypatch.setattr(image_codec, "encode_image_result", no_work)
    monkeypatch.setattr(image_codec, "decode_image_result", no_work)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    for argv, expected in (
        (["encode", str(photo), str(vqc), "--model", M], f"output {vqc} exists"),
        (["encode", str(photo), str(blocker / "sub" / "x.vqc"), "--model", M], "cannot create the folder"),
        (["decode", str(vqc), str(blocker / "x.png"), "--model", M], f"output {blocker / 'x.png'}"),
        (["decode", str(vqc), "-o", str(photo), "--model", M], f"output {photo} exists"),
    ):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert expected in err and ".part" not in err and "\n" not in err, err
        assert not err.startswith(f"vqcodec: error: {argv[1]}:"), "named after the input, not the output"


def test_single_output_parent_folders_are_created(photo, tmp_path, capsys):
    target = tmp_path / "new" / "deeper" / "photo.vqc"
    assert main(["encode", str(photo), str(target), "--model", M]) == 0
    assert target.is_file() and f"-> {target}" in capsys.readouterr().out
    out = tmp_path / "png" / "back.png"
    assert main(["decode", str(target), str(out), "--model", M, "--quiet"]) == 0
    assert Image.open(out).size == (40, 32)


def test_several_inputs_into_one_vqc_is_explained(photo, tmp_path, capsys):
    other = tmp_path / "b.png"
    Image.fromarray(picture(16, 16, 3)).save(other)
    assert main(["encode", str(photo), str(other), str(tmp_path / "both.vqc"), "--model", M]) == 1
    err = capsys.readouterr().err
    assert "-o DIR/" in err and "one of the inputs" not in err
    assert not (tmp_path / "both.vqc").exists()


def test_empty_and_foreign_files_get_a_clear_message(tmp_path, capsys):
    from vqcodec.codec.image import encode_image
    from vqcodec.codec.media import ImageFileError
    from vqcodec.errors import VQCError

    empty, text = tmp_path / "empty.png", tmp_path / "text.png"
    empty.write_bytes(b"")
    text.write_text("not a picture at all")
    assert main(["encode", str(empty), "--model", M]) == 1
    assert capsys.readouterr().err.strip() == f"vqcodec: error: {empty}: empty file"
    assert main(["encode", str(text), "--model", M]) == 1
    err = capsys.readouterr().err
    assert f"{text}: not a picture" in err and "BufferedReader" not in err
    # the library: one error that is both vqcodec's and Pillow's (an OSError)
    with pytest.raises(ImageFileError, match="not a picture") as info:
        encode_image(str(text), 1, model=M)
    assert isinstance(info.value, UnidentifiedImageError) and isinstance(info.value, VQCError)
    with pytest.raises(ImageFileError, match="empty file"):
        encode_image(str(empty), 1, model=M)


# --- item 3: checks before torch ----------------------------------------------------------------


def test_bad_arguments_fail_without_importing_torch(photo, tmp_path):
    """-q 99, a missing file, an existing output: refused before torch is imported."""
    code = (
        "import sys\n"
        "from vqcodec.cli import main\n"
        f"p = {str(photo)!r}\n"
        "codes = [main(['encode', p, '-q', '99']), main(['encode', p, '-q', '0', '--model', "
        f"{M!r}]), main(['encode', p + '.missing']), main(['decode', p + '.vqc']),"
        f" main(['encode', p, {str(photo)!r} + '.vqc', '--bpp', '-1']),"
        f" main(['decode', 'x.vqc', 'out.jpg', '-q', '500'])]\n"
        "print(codes, 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert result.stdout.strip() == "[1, 1, 1, 1, 1, 1] False", result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 6
    from vqcodec.models.catalog import REGISTRY

    default = next(info for info in REGISTRY if info.media == "image" and info.default)
    levels = len(default.config["steps"])  # the default image model's levels, from the catalogue
    assert f"1..{levels}" in lines[0] and "1..4" in lines[1] and "no such file" in lines[2]


# --- item 2: threads ------------------------------------------------------------------------


def test_threads_option_sets_torch_threads(photo, tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["encode", str(photo), str(tmp_path / "t.vqc"), "--model", M, "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
        vqc = tmp_path / "t.vqc"
        assert main(["decode", str(vqc), str(tmp_path / "t.png"), "--model", M, "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
        assert main(["encode", str(photo), "--model", M, "--threads", "-2"]) == 1
        assert "--threads" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


# --- item 9: options, terminals, pipes, batch reports, plugin errors -------------------------------


def test_q_is_quality_everywhere_and_decode_writes_lossy_outputs_at_it(vqc, tmp_path, capsys):
    low, high = tmp_path / "low.jpg", tmp_path / "high.jpg"
    assert main(["decode", str(vqc), str(low), "-q", "10", "--model", M, "--quiet"]) == 0
    assert main(["decode", str(vqc), str(high), "--quality", "98", "--model", M, "--quiet"]) == 0
    assert low.stat().st_size < high.stat().st_size
    assert main(["decode", str(vqc), str(tmp_path / "x.webp"), "-q", "0", "--model", M]) == 1
    assert "1..100" in capsys.readouterr().err
    assert main(["decode", str(vqc), str(tmp_path / "x.png"), "-q", "50", "--model", M]) == 0
    assert "lossless" in capsys.readouterr().err  # -q has no effect on PNG: said so
    from vqcodec.cli import build_parser

    for command in ("encode", "decode", "bench"):
        sub = build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
        short = {opt: a.dest for a in sub._actions for opt in a.option_strings}
        assert short.get("-q") == "quality" and short.get("--quiet") in (None, "quiet"), command


def test_top_level_help_is_for_users(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "vqcodec decode photo.vqc" in out and "--threads" in out
    assert "argparse" not in out and "Conventions" not in out


def test_binary_output_to_a_terminal_is_refused(vqc, photo, monkeypatch, capsys):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert main(["decode", str(vqc), "-", "--model", M]) == 1
    assert main(["encode", str(photo), "-", "--model", M]) == 1
    err = capsys.readouterr().err
    assert err.count("terminal") == 2 and terminal.buffer.getvalue() == b""


def test_a_closed_pipe_exits_quietly(vqc, monkeypatch, capsys):
    class ClosedPipe(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data):
            raise BrokenPipeError(32, "Broken pipe")

    stdout = io.TextIOWrapper(io.BufferedWriter(ClosedPipe()))
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["decode", str(vqc), "-", "--model", M]) == 1
    assert capsys.readouterr().err == ""


def test_batch_mean_bpp_is_weighted_by_pixels_and_warnings_name_their_file(tmp_path, capsys):
    big, tiny, deep = tmp_path / "big.png", tmp_path / "tiny.png", tmp_path / "deep.png"
    Image.fromarray(picture(64, 64, 3)).save(big)
    Image.fromarray(picture(1, 1, 3)).save(tiny)
    Image.fromarray(np.arange(256, dtype=np.uint16).reshape(16, 16) * 257).save(deep)  # 16-bit gray
    argv = ["encode", str(big), str(tiny), str(deep), "-o", str(tmp_path / "out") + "/", "--model", M]
    assert main([*argv, "--json", "-q", "2"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    files = report["files"]
    bits = sum(8 * f["bytes_out"] for f in files)
    pixels = sum(f["width"] * f["height"] for f in files)
    assert report["summary"]["mean_bpp"] == pytest.approx(bits / pixels)
    assert report["summary"]["mean_bpp"] < max(f["bpp"] for f in files) / 10  # the 1x1 file does not rule
    assert f"warning: {deep}: 16-bit" in captured.err


# --- items 4 and 6: targets that cannot be met, conversions that lose data --------------------------


def test_unreachable_targets_warn_and_fail_with_strict(photo, tmp_path, capsys):
    out = tmp_path / "t.vqc"
    assert main(["encode", str(photo), str(out), "--bpp", "0.0001", "--model", M]) == 0
    err = capsys.readouterr().err
    assert "--bpp 0.0001 cannot be met" in err and "quality 1" in err and out.is_file()
    strict = tmp_path / "s.vqc"
    assert main(["encode", str(photo), str(strict), "--psnr", "99", "--strict", "--model", M]) == 1
    err = capsys.readouterr().err
    assert "--psnr 99 cannot be met" in err and "--strict" in err and not strict.exists()
    assert main(["encode", str(photo), str(strict), "--bpp", "50", "--strict", "--model", M]) == 0
    assert "cannot be met" not in capsys.readouterr().err


def test_animated_cmyk_and_vqc_inputs(photo, vqc, tmp_path, capsys):
    frames = [Image.new("RGB", (16, 16), (40 * i, 0, 0)) for i in range(3)]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    assert main(["encode", str(gif), "--model", M]) == 1
    err = capsys.readouterr().err
    assert "animated GIF with 3 frames" in err and not gif.with_suffix(".vqc").exists()
    cmyk = tmp_path / "cmyk.jpg"
    Image.open(photo).convert("CMYK").save(cmyk)
    assert main(["encode", str(cmyk), "--model", M]) == 0
    assert "CMYK" in capsys.readouterr().err
    again = tmp_path / "again.vqc"
    main(["encode", str(vqc), str(again), "--model", M])
    assert "already a .vqc file" in capsys.readouterr().err


# --- item 8: progress on a terminal ------------------------------------------------------------


def test_ticker_shows_progress_only_on_a_terminal(monkeypatch):
    import time

    from vqcodec.cli._batch import Ticker

    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with Ticker("encoding x.png", enabled=True, delay=0.0, period=0.01):
        time.sleep(0.1)
    text = terminal.getvalue()
    assert "\rencoding x.png" in text and " s " in text and text.endswith("\r\x1b[K")
    plain = io.StringIO()
    monkeypatch.setattr(sys, "stderr", plain)
    with Ticker("encoding x.png", enabled=True, delay=0.0, period=0.01):
        time.sleep(0.05)
    terminal2 = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal2)
    with Ticker("encoding x.png", enabled=False, delay=0.0, period=0.01):  # --quiet
        time.sleep(0.05)
    assert plain.getvalue() == "" and terminal2.getvalue() == ""


# --- items 6, 8, 9: audio left behind, video progress, train options ----------------------------


def _mp4_with_audio(path: Path) -> None:
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 32, 24, "yuv420p"
        audio = container.add_stream("aac", rate=44100)
        for t in range(3):
            frame = av.VideoFrame.from_ndarray(picture(24, 32, 3, seed=t), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        samples.sample_rate = 44100
        for packet in [*audio.encode(samples), *audio.encode()]:
            container.mux(packet)


def test_an_mp4_audio_track_is_named_when_it_is_left_behind(tmp_path, capsys):
    clip = tmp_path / "talk.mp4"
    _mp4_with_audio(clip)
    assert main(["encode", str(clip), str(tmp_path / "talk.vqc"), "-q", "2", "--model", M]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "talk.mp4" in err and "audio stream 1 (aac)" in err
    assert main(["encode", str(clip), str(tmp_path / "q.vqc"), "-q", "2", "--model", M, "--quiet"]) == 0
    assert capsys.readouterr().err == ""  # --quiet: errors only
    # a Y4M input has nothing to leave behind
    y4m = REPO / "samples" / "orbit.y4m"
    out = tmp_path / "orbit.vqc"
    assert main(["encode", str(y4m), str(out), "-q", "2", "--model", M, "--frames", "0:2"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_video_progress_line_counts_frames_rate_and_eta():
    from vqcodec.cli._video import VideoProgress

    terminal = FakeTerminal()
    clock = iter([0.0, 1.0, 3.0, 3.1, 5.0])
    progress = VideoProgress("encode clip.mp4", enabled=True, total=100, fps=25.0, stream=terminal)
    progress._clock = lambda: next(clock)  # type: ignore[method-assign]
    progress.start = 0.0
    progress.update(10, 5000)  # t=0: before the delay, nothing shown
    progress.update(20, 10000)  # t=1: still before the 2 s delay
    progress.update(30, 15000)  # t=3: shown
    progress.update(31, 15500)  # t=3.1: within the period, skipped
    progress.update(50, 25000)  # t=5: shown
    progress.finish()
    text = terminal.getvalue()
    assert "frame 10/" not in text and "frame 31/" not in text
    assert "\rencode clip.mp4  frame 30/100  10.0 fps  100 kbit/s  ETA 7 s" in text
    assert "frame 50/100  10.0 fps" in text and "ETA 5 s" in text and text.endswith("\r\x1b[K")
    # never on a pipe, never with --quiet
    for stream, enabled in ((io.StringIO(), True), (FakeTerminal(), False)):
        quiet = VideoProgress("x", enabled=enabled, total=None, stream=stream, delay=0.0, period=0.0)
        quiet.update(5, 100)
        quiet.finish()
        assert stream.getvalue() == ""
    # an unknown length shows no total and no ETA
    unknown = VideoProgress("d", enabled=False)
    assert unknown.line(7, None, unknown.start + 1.0) == "d  frame 7  7.0 fps"


def test_train_options_match_the_other_commands(capsys):
    from vqcodec.cli import build_parser

    train = build_parser()._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    options = {opt: a.dest for a in train._actions for opt in a.option_strings}
    assert "-q" not in options and options["--quiet"] == "quiet" and options["--threads"] == "threads"
    assert main(["train", "missing.toml", "--threads", "-1"]) == 1
    assert "--threads" in capsys.readouterr().err


def test_salvage_decodes_the_complete_frames_of_a_cut_file(vqc, tmp_path, capsys):
    intact = tmp_path / "intact.png"
    assert main(["decode", str(vqc), str(intact), "--model", M, "--quiet"]) == 0
    data = vqc.read_bytes()
    cut = tmp_path / "cut.vqc"
    cut.write_bytes(data[:-5])  # the end chunk is cut; the frame is complete
    out = tmp_path / "cut.png"
    assert main(["decode", str(cut), str(out), "--model", M]) == 1 and not out.exists()
    capsys.readouterr()
    assert main(["decode", str(cut), str(out), "--model", M, "--salvage"]) == 0
    err = capsys.readouterr().err
    assert "cut.vqc: salvaged: kept 1 complete frame(s)" in err and "first problem" in err
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(intact)))
    # a file cut inside its only frame has nothing to salvage: one error line, no output
    short = tmp_path / "short.vqc"
    short.write_bytes(data[: len(data) // 2])
    assert main(["decode", str(short), str(tmp_path / "s.png"), "--model", M, "--salvage"]) == 1
    assert "vqcodec: error:" in capsys.readouterr().err and not (tmp_path / "s.png").exists()


def test_salvage_resyncs_a_damaged_clip_at_its_next_key_frame(tmp_path, capsys):
    clip = tmp_path / "c.vqc"
    y4m = REPO / "samples" / "orbit.y4m"
    assert (
        main(
            [
                "encode",
                str(y4m),
                str(clip),
                "-q",
                "2",
                "--model",
                M,
                "--frames",
                "0:6",
                "--gop",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    from vqcodec.container import ContainerReader

    with ContainerReader(str(clip)) as reader:
        offsets = [c.offset for c in reader.chunks() if c.type == "FRAM"]
    data = bytearray(clip.read_bytes())
    data[offsets[1] + 14] ^= 0xFF  # frame 1 (predicted) is damaged
    bad = tmp_path / "bad.vqc"
    bad.write_bytes(bytes(data))
    out = tmp_path / "bad.y4m"
    assert main(["decode", str(bad), str(out), "--model", M]) == 1 and not out.exists()
    capsys.readouterr()
    assert main(["decode", str(bad), str(out), "--model", M, "--salvage"]) == 0
    err = capsys.readouterr().err
    assert "kept 5 complete frame(s); lost frame(s) 1;" in err and "5 frames" in err


def test_an_odd_sized_clip_decodes_to_an_mp4_of_its_exact_size(tmp_path, capsys):
    import av

    from vqcodec.codec.video_io import VideoInfo, Y4MWriter

    y4m = tmp_path / "odd.y4m"
    info = VideoInfo(width=37, height=23, fps=25, pixel_format="yuv444p")
    with open(y4m, "wb") as f:
        writer = Y4MWriter(f, info)
        for t in range(3):
            writer.write(picture(23, 37, 3, seed=t))
        writer.close()
    clip = tmp_path / "odd.vqc"
    assert main(["encode", str(y4m), str(clip), "-q", "2", "--model", M, "--quiet"]) == 0
    mp4 = tmp_path / "odd.mp4"
    assert main(["decode", str(clip), str(mp4), "--model", M, "--quiet"]) == 0
    with av.open(str(mp4)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert (stream.codec_context.width, stream.codec_context.height) == (37, 23)
    assert len(frames) == 3 and frames[0].shape == (23, 37, 3)
