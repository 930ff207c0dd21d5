"""A short run of benchmarks/fuzz_decode.py (the full campaign is 100,000 cases) and its harness checks.

The corpora are built once for the module, and the short campaign runs once: its outcomes are both
checked and replayed in this process.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FUZZ_SCRIPT = REPO / "benchmarks" / "fuzz_decode.py"
# enough cases for every mutation family on every corpus file, and for each expected outcome below;
# the benchmark itself runs 100,000
CAMPAIGN_SEED, CAMPAIGN_CASES = 1_000_000, 600


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_decode", FUZZ_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_decode"] = module  # dataclasses look their module up while pickling
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("fuzz_decode", None)


@pytest.fixture(scope="module")
def bundled_corpus(fuzz):
    """(corpus, notes) from the bundled image and video models."""
    return fuzz.build_corpus()


@pytest.fixture(scope="module")
def tiny_corpus(fuzz):
    """(corpus, notes) from the tiny test model: its images, then clips coded with it."""
    return fuzz.build_corpus([str(fuzz.TINY_IMAGE_MODEL)])


@pytest.fixture(scope="module")
def short_campaign(fuzz, bundled_corpus):
    # one worker: the other pytest-xdist worker already holds the second core, and one worker pays
    # one torch import and model warm-up instead of two
    return fuzz.run_campaign(
        CAMPAIGN_CASES, seed=CAMPAIGN_SEED, workers=1, timeout=5.0, memory_mb=1024, prebuilt=bundled_corpus
    )


@pytest.mark.slow
def test_short_campaign_has_no_problems(fuzz, short_campaign, bundled_corpus):
    campaign = short_campaign
    summary = campaign.summary()
    assert campaign.problems == [], "\n".join(
        f"seed {p['seed']}: {p['outcome']} {p['mutation']} {p['message']}" for p in campaign.problems
    )
    totals = summary["totals"]
    assert totals["ok"] + totals["expected"] == CAMPAIGN_CASES
    # the cases reach every layer: container framing, CRCs, the entropy payload, the model
    outcomes = summary["outcomes"]
    for name in ("expected:ChecksumError", "expected:TruncatedError", "expected:FormatError", "ok"):
        assert outcomes.get(name, 0) > 0, outcomes
    assert any("payload" in m or "coded body" in m for m in summary["top_error_messages"]), summary[
        "top_error_messages"
    ]
    assert set(fuzz.MUTATIONS) <= set(summary["by_mutation"]), summary["by_mutation"]
    # ... on every file of the corpus: images and clips, of each bundled model
    corpus, _ = bundled_corpus
    assert {name for name, _ in campaign.case_of.values()} == {item.name for item in corpus}
    assert {item.media for item in corpus} == {"image", "video"}


def test_cases_are_reproducible_from_their_seed(fuzz, bundled_corpus):
    corpus, _ = bundled_corpus
    cases = [fuzz.make_case(corpus, seed) for seed in range(200)]
    for seed, case in enumerate(cases):
        assert fuzz.make_case(corpus, seed) == case
    assert len({data for _, _, data in cases}) > 150


@pytest.mark.slow
def test_harness_reports_crash_hang_memory_and_unexpected(fuzz, tiny_corpus, monkeypatch):
    """Deliberate failures injected in the worker must each be caught and tied to their seed."""
    monkeypatch.setenv("VQCODEC_FUZZ_SELFTEST", "3:crash,5:hang,7:slow,9:alloc,10:torch-alloc,11:raise")
    corpus, notes = tiny_corpus
    # the tiny model's pictures: fast cases, so only the injected ones may hit the limits
    images = [item for item in corpus if item.media == "image"]
    assert images
    # limits well above a tiny-model case (milliseconds; the worker warms up before its first
    # case is timed) and short, since the hang and slow cases wait them out
    campaign = fuzz.run_campaign(
        14, seed=0, workers=2, timeout=1.0, memory_mb=256, watchdog=2.5, prebuilt=(images, notes)
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


@pytest.mark.slow
def test_replay_gives_the_campaign_outcome(fuzz, short_campaign, bundled_corpus):
    campaign = short_campaign
    corpus, _ = bundled_corpus
    assert sorted(campaign.by_seed) == list(range(CAMPAIGN_SEED, CAMPAIGN_SEED + CAMPAIGN_CASES))
    # in this process, without the worker's limits: the same outcome, for the first seeds of each
    # mutation family and the first seed of each outcome
    replayed: dict[str, list[int]] = {}
    for seed, (_, mutation) in sorted(campaign.case_of.items()):
        family = mutation.split("-")[0]
        if len(replayed.setdefault(family, [])) < 4:
            replayed[family].append(seed)
    assert set(replayed) == set(fuzz.MUTATIONS)
    seeds = {seed for family_seeds in replayed.values() for seed in family_seeds}
    seeds |= {min(s for s, o in campaign.by_seed.items() if o == outcome) for outcome in campaign.outcomes}
    for seed in sorted(seeds):
        result = fuzz.run_case(corpus, seed, 0)
        assert (result["file"], result["mutation"]) == campaign.case_of[seed], seed
        assert result["outcome"] == campaign.by_seed[seed], seed


def test_cli_decode_of_mutated_files(fuzz, tiny_corpus, tmp_path, capsys):
    """``vqcodec decode`` on mutated files: exit 0 with an output, or exit 1 with one error line
    and nothing written."""
    from vqcodec.cli import main as cli_main

    tiny = str(fuzz.TINY_IMAGE_MODEL)
    corpus, _ = tiny_corpus
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
