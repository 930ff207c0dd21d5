"""A short run of benchmarks/fuzz_decode.py (the full campaign is 100,000 cases) and its harness checks."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FUZZ_SCRIPT = REPO / "benchmarks" / "fuzz_decode.py"


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_decode", FUZZ_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_decode"] = module  # dataclasses look their module up while pickling
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("fuzz_decode", None)


def test_short_campaign_has_no_problems(fuzz):
    campaign = fuzz.run_campaign(3000, seed=1_000_000, workers=2, timeout=5.0, memory_mb=1024)
    summary = campaign.summary()
    assert campaign.problems == [], "\n".join(
        f"seed {p['seed']}: {p['outcome']} {p['mutation']} {p['message']}" for p in campaign.problems
    )
    totals = summary["totals"]
    assert totals["ok"] + totals["expected"] == 3000
    # the cases reach every layer: container framing, CRCs, the entropy payload, the model
    outcomes = summary["outcomes"]
    for name in ("expected:ChecksumError", "expected:TruncatedError", "expected:FormatError", "ok"):
        assert outcomes.get(name, 0) > 0, outcomes
    assert any("payload" in m or "coded body" in m for m in summary["top_error_messages"]), summary[
        "top_error_messages"
    ]
    assert {"flip", "splice", "truncate", "chunk", "payload", "head", "codes"} <= set(summary["by_mutation"])


def test_cases_are_reproducible_from_their_seed(fuzz):
    corpus, _ = fuzz.build_corpus(video=False)
    for seed in range(200):
        assert fuzz.make_case(corpus, seed) == fuzz.make_case(corpus, seed)
    assert len({fuzz.make_case(corpus, seed)[2] for seed in range(200)}) > 150


def test_harness_reports_crash_hang_memory_and_unexpected(fuzz, monkeypatch):
    """Deliberate failures injected in the worker must each be caught and tied to their seed."""
    monkeypatch.setenv("VQCODEC_FUZZ_SELFTEST", "3:crash,5:hang,7:slow,9:alloc,10:torch-alloc,11:raise")
    tiny = str(fuzz.TINY_IMAGE_MODEL)  # fast cases: only the injected ones may hit the limits
    campaign = fuzz.run_campaign(
        14, seed=0, workers=2, timeout=2.0, memory_mb=256, watchdog=4.0, video=False, model_paths=[tiny]
    )
    by_seed = {p["seed"]: p["outcome"] for p in campaign.problems}
    assert by_seed == {
        3: "crash",
        5: "hang",
        7: "hang",
        9: "memory",
        10: "memory",
        11: "unexpected:AttributeError",
    }, campaign.problems
    assert sum(campaign.outcomes.values()) == 14
    assert campaign.restarts == 2  # after the crash and after the watchdog kill


def test_replay_gives_the_campaign_outcome(fuzz):
    tiny = str(fuzz.TINY_IMAGE_MODEL)
    campaign = fuzz.run_campaign(120, seed=42, workers=1, model_paths=[tiny])
    corpus, _ = fuzz.build_corpus([tiny])
    assert sorted(campaign.by_seed) == list(range(42, 162))
    for seed in range(42, 162, 3):  # in this process, without the worker's limits: the same outcome
        assert fuzz.run_case(corpus, seed, 0)["outcome"] == campaign.by_seed[seed], seed


def test_cli_decode_of_mutated_files(fuzz, tmp_path, capsys):
    """``vqcodec decode`` on mutated files: exit 0 with an output, or exit 1 with one error line
    and nothing written."""
    from vqcodec.cli import main as cli_main

    tiny = str(fuzz.TINY_IMAGE_MODEL)
    corpus, _ = fuzz.build_corpus([tiny])
    statuses = set()
    for seed in range(300):
        _, _, data = fuzz.make_case(corpus, seed)
        folder = tmp_path / str(seed)
        folder.mkdir()
        (folder / "in.vqc").write_bytes(data)
        output = folder / ("out.y4m" if fuzz.media_byte(data) == "video" else "out.png")
        status = cli_main(["decode", str(folder / "in.vqc"), str(output), "--model", tiny, "--quiet"])
        err = capsys.readouterr().err
        statuses.add(status)
        names = sorted(p.name for p in folder.iterdir())
        if status == 0:
            assert names == sorted(["in.vqc", output.name]), (seed, names)
        else:
            assert status == 1, (seed, status, err)
            assert names == ["in.vqc"], (seed, names)
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("vqcodec: error:"), (seed, err)
    assert statuses == {0, 1}
