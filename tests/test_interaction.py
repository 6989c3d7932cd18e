"""Two studies' differences between the same two cells, contrasted (``analysis.interaction``): a built-in reversal
is found and significant, identical studies contrast to zero, the exact p-value is scipy's exact permutation test,
and studies scored on different questions are refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import permutation_test

from analysis.__main__ import main
from analysis.collect import load
from analysis.compare import AVERAGE, CompareError
from analysis.interaction import contrast, interactions
from analysis.uncertainty import Cell
from tests.helpers.handmade import add_set, handmade_job


def first(k: int, n: int = 100) -> list[bool]:
    return [i < k for i in range(n)]


def study(root, model: str, right: dict[str, int], n: int = 100):
    """lora at each placement answering its first ``right[placement]`` questions of arc_e and boolq, seeds 1, 2."""
    for placement, k in right.items():
        for seed in (1, 2):
            name = f"{placement}-{seed}"
            handmade_job(root / model, name, "lora", seed, first(k, n), first(k, n), placement=placement, model=model)
            add_set(root / model / name, "boolq", first(k, n))
    return root / model


def test_a_reversal_between_models_is_the_difference_of_the_differences_and_significant(tmp_path):
    one = load([study(tmp_path, "m1", {"attn": 60, "mlp": 40})])
    # the second study lists mlp first, so its pair comes the other way round and is turned
    two = load([study(tmp_path, "m2", {"mlp": 60, "attn": 40})])
    found = interactions(one, two, by="placement")
    assert sorted(found["set"]) == sorted(["arc_e", "boolq", AVERAGE]) and found["set"].iloc[-1] == AVERAGE
    sign = 1 if found["a"].iloc[0] == "lora@attn" else -1
    assert np.allclose(found["first"], sign * 20) and np.allclose(found["second"], sign * -20)
    assert np.allclose(found["difference"], sign * 40)
    assert found["significant"].all()
    # 20 of 100 questions contrast by 2 points, the rest by 0: sd 2·√(0.2·0.8/100) = 8 points a set
    assert (found["low"] * sign > 20).all() and (found["high"] * sign < 60).all()


def test_identical_studies_contrast_to_zero(tmp_path):
    one = load([study(tmp_path, "m1", {"attn": 60, "mlp": 40})])
    two = load([study(tmp_path, "m2", {"attn": 60, "mlp": 40})])
    found = interactions(one, two, by="placement")
    assert np.allclose(found["difference"], 0) and (found["p"] == 1).all() and not found["significant"].any()


def test_the_exact_p_value_is_scipys_exact_permutation_test():
    rng = np.random.default_rng(3)
    ids = [f"arc_e/{i}" for i in range(11)]
    a1, b1, a2, b2 = (Cell(ids, rng.integers(0, 2, size=(s, 11)).astype(np.float32)) for s in (2, 3, 2, 3))
    mean = [c.scores.astype(np.float64).mean(axis=0) for c in (a1, b1, a2, b2)]
    d = (mean[0] - mean[1]) - (mean[2] - mean[3])  # in float64: float32 sums would break scipy's ties
    exact = permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf, alternative="two-sided")
    assert contrast([((a1, b1), (a2, b2))])["p"] == pytest.approx(exact.pvalue, rel=1e-9)


def test_studies_scored_on_different_questions_are_refused(tmp_path):
    one = load([study(tmp_path, "m1", {"attn": 60, "mlp": 40})])
    two = load([study(tmp_path, "m2", {"attn": 30, "mlp": 20}, n=50)])
    with pytest.raises(
        CompareError, match=r"lora@\w+ − lora@\w+ on (arc_e|boolq): the studies scored different questions"
    ):
        interactions(one, two, by="placement")


def test_the_command_names_both_models_and_writes_the_table(tmp_path, capsys):
    study(tmp_path, "m1", {"attn": 60, "mlp": 40})
    study(tmp_path, "m2", {"attn": 40, "mlp": 60})
    out = tmp_path / "out"
    assert (
        main(["interaction", str(tmp_path / "m1"), str(tmp_path / "m2"), "--by", "placement", "--out", str(out)]) == 0
    )
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3 and all(" m1 " in line and " m2 " in line for line in printed)
    table = pd.read_csv(out / "interaction.csv")
    assert {"m1", "m2", "difference", "p_holm"} <= set(table.columns)
    assert "Holm-adjusted across these 3 rows" in (out / "interaction.md").read_text()
    assert main(["interaction", str(tmp_path / "m1"), str(tmp_path / "nothing"), "--out", str(out)]) == 2
