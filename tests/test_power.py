"""Power before running: the minimum detectable difference equals its formula, and in simulation a true difference
of that size is detected at about the power it promises (and one of half the size clearly less often)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy.stats import norm

from analysis import uncertainty
from analysis.uncertainty import Cell, compare
from llm_adapters.job.sweep import power_line
from llm_adapters.stats.power import family_size, minimum_detectable, study_line
from tests.helpers.configs import make_config


def test_the_figure_is_its_formula():
    z = norm.ppf(1 - 0.05 / (2 * 3)) + norm.ppf(0.8)
    expected = z * math.sqrt((0.2 / 500 + 0.2 / 1000) / 4 * 1e4 + 2 * 1.0**2 / 3)
    assert minimum_detectable([500, 1000], seeds=3, comparisons=3) == pytest.approx(expected)
    assert minimum_detectable([500], 3, 3, {"seed_sd": 0.0}) < minimum_detectable([500], 3, 3)
    assert minimum_detectable([500], 3, 15) > minimum_detectable([500], 3, 3)  # more comparisons, stricter


def test_a_difference_of_that_size_is_found_at_that_power(monkeypatch):
    """One seed, no seed spread, one comparison, 300 questions on which two runs disagree 20% of the time: a true
    difference of the minimum detectable size is found in 80% ± 3 simulation SEs (n 150) of studies."""
    monkeypatch.setattr(uncertainty, "REPLICATES", 100)
    monkeypatch.setattr(uncertainty, "PERMUTATIONS", 999)
    n, disagreement = 300, 0.2
    margin = minimum_detectable([n], seeds=1, comparisons=1, given={"seed_sd": 0.0}) / 100
    rng = np.random.default_rng(11)

    def found(delta: float) -> bool:
        u = rng.random(n)  # a right and b wrong with prob (δ + Δ)/2, the reverse with (δ − Δ)/2, agreeing otherwise
        a_only, b_only = u < (disagreement + delta) / 2, (u >= (disagreement + delta) / 2) & (u < disagreement)
        agree = rng.random(n) < 0.5
        a = np.where(a_only | b_only, a_only, agree).astype(np.float32)
        b = np.where(a_only | b_only, b_only, agree).astype(np.float32)
        ids = [str(i) for i in range(n)]
        return compare(Cell(ids, a[None]), Cell(ids, b[None]), seed=int(rng.integers(1 << 30))).p < 0.05

    rate = np.mean([found(margin) for _ in range(150)])
    assert abs(rate - 0.8) <= 3 * math.sqrt(0.8 * 0.2 / 150)
    assert np.mean([found(margin / 2) for _ in range(150)]) < 0.5


def test_the_study_line_counts_cells_and_seeds():
    plans = [
        {"config": plan_config(f"adapter={kind}", f"seed={seed}"), "eval_questions": {"arc_e": 100}}
        for kind in ("lora", "series", "parallel")
        for seed in (1, 2)
    ]
    line = power_line(plans)
    assert line.startswith("power: 3 cells x 2 seed(s), 3 pairs x 1 rows = 3 tests, questions arc_e 100:")
    assert f"{minimum_detectable([100], 2, 3):.1f} points" in line
    assert study_line(2, 1, 1, {"gsm8k": None}).startswith("power: unknown number of test questions for gsm8k")


def test_the_family_is_the_analysis_one_pairs_by_an_axis_times_each_set_and_the_average():
    """Two kinds at three placements and the frozen base (swept over the placements: one cell, as it is one job),
    two sets: 7 cells; with ``power.by=placement`` the pairs are the 2 × 3 within a kind, each tested on both sets
    and their average, 18 tests, as ``analysis compare --by placement`` adjusts them."""
    sets = {"arc_e": 300, "boolq": 300}
    plans = [
        {
            "config": plan_config(f"adapter={kind}", f"placement={where}", "+power.by=placement"),
            "eval_questions": sets,
        }
        for kind in ("none", "lora", "series")
        for where in ("attn", "mlp", "both")
    ]
    line = power_line(plans)
    assert line.startswith("power: 7 cells x 1 seed(s), 6 pairs differing in placement alone x 3 rows = 18 tests")
    assert f"{minimum_detectable([300, 300], 1, 18):.1f} points" in line
    every = power_line([{**p, "config": {**p["config"], "power": {}}} for p in plans])
    assert "21 pairs x 3 rows = 63 tests" in every  # 7 cells, every pair
    assert family_size(pairs=4, sets=1) == 4 and family_size(pairs=4, sets=7) == 32


def plan_config(*overrides: str) -> dict:
    return OmegaConf.to_container(make_config("mode=plan", *overrides), resolve=True)
