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
    assert {"flip", "splice", "truncate", "chunk", "payload", "head"} <= set(summary["by_mutation"])


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
