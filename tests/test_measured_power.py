"""The power a finished study had, measured from its predictions (``analysis.power``): the disagreement and the seed
spread are the ones built into hand-made jobs, and the minimum detectable difference is plan mode's formula at
them, at the Holm family the comparisons adjust."""

from __future__ import annotations

import json

import pytest

from analysis.__main__ import main
from analysis.collect import load
from analysis.power import measure
from llm_adapters.stats.power import minimum_detectable
from tests.helpers.handmade import add_set, handmade_job


def first(k: int, n: int = 100) -> list[bool]:
    return [i < k for i in range(n)]


@pytest.fixture
def study(tmp_path):
    """lora@attn answers the first 50 and 60 questions (seeds 1, 2), lora@mlp the first 40 and 50, on both sets;
    series@attn, in another kind, is no pair of theirs under ``by=placement``."""
    for placement, adapter, right in (
        ("attn", "lora", (50, 60)),
        ("mlp", "lora", (40, 50)),
        ("attn", "series", (5, 9)),
    ):
        for seed, k in zip((1, 2), right, strict=True):
            name = f"{adapter}-{placement}-{seed}"
            handmade_job(tmp_path / "runs", name, adapter, seed, first(k), first(k), placement=placement)
            add_set(tmp_path / "runs" / name, "boolq", first(k))
    return tmp_path / "runs"


def test_disagreement_and_seed_spread_are_the_built_in_ones(study):
    found = measure(load([study]), by="placement")
    # seed pairings (50,40) (50,50) (60,40) (60,50): 10, 0, 20, 10 questions of 100 differ; each cell's two seeds
    # are 10 points apart: variance 50, pooled sd √50
    assert found.pairs == 1 and found.seeds == 2 and found.questions == {"boolq": 100, "arc_e": 100}
    assert found.disagreement == pytest.approx(0.10)
    assert found.seed_sd == pytest.approx(50**0.5)
    assert found.comparisons == 3  # two sets and their average, one pair
    expected = minimum_detectable([100, 100], 2, 3, {"disagreement": 0.10, "seed_sd": 50**0.5})
    assert found.minimum_detectable == pytest.approx(expected)
    assert found.floor == pytest.approx(minimum_detectable([100, 100], 2, 3, {"disagreement": 0.10, "seed_sd": 0}))
    assert found.floor < found.minimum_detectable
    assert found.largest_difference == pytest.approx(10.0)
    assert found.from_intervals > 0


def test_every_pair_counts_in_the_family_without_by(study):
    found = measure(load([study]))
    assert found.pairs == 3 and found.comparisons == 9  # three pairs x (two sets + the average)


def test_the_command_writes_the_figures_and_prints_the_line(study, tmp_path, capsys):
    assert main(["power", str(study), "--by", "placement", "--out", str(tmp_path / "p")]) == 0
    assert "disagreement 0.100, seed sd 7.07 points" in capsys.readouterr().out
    written = json.loads((tmp_path / "p" / "power.json").read_text())
    assert written["by"] == "placement" and written["disagreement"] == pytest.approx(0.1)
    assert main(["power", str(study), "--sets", "arc_e", "--out", str(tmp_path / "q")]) == 2  # one set: no average
    assert "no pair of cells shares two or more sets" in capsys.readouterr().err
