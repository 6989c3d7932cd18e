"""``python -m analysis agreement``: the cells scored by both likelihood and generation, paired on the questions
both scored, and the rank correlations of their accuracies (scipy's)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from scipy import stats

from analysis.agreement import AgreementError, agreement, cells


def job(tmp_path, name: str, picks: list[str | None], gold: list[str]) -> str:
    folder = tmp_path / name
    folder.mkdir()
    rows = [
        {"id": f"arc_e/{i}", "extracted": p, "correct": p == g}
        for i, (p, g) in enumerate(zip(picks, gold, strict=True))
    ]
    rows.append({"id": "obqa/0", "extracted": "answer1", "correct": True})  # another set: not counted
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(folder)


def frame(tmp_path, rights: dict[str, tuple[int, int]], n: int = 10) -> pd.DataFrame:
    """Per placement, (right by loglik, right by generation) of ``n`` questions whose gold is answer1; generation's
    wrong answers name no option, loglik's name answer2."""
    gold, rows = ["answer1"] * n, []
    for placement, (by_loglik, by_generation) in rights.items():
        for method, right, wrong in (("loglik", by_loglik, "answer2"), ("generate", by_generation, None)):
            picks = ["answer1"] * right + [wrong] * (n - right)
            rows.append(
                {"job": job(tmp_path, f"{placement}-{method}", picks, gold), "status": "ok", "method": method}
                | {"model": "m", "adapter": "lora", "placement": placement, "size": 8, "train_set": "mix", "seed": 42}
            )
    rows.append(rows[0] | {"status": "failed", "method": "generate"})  # a failed job pairs with nothing
    return pd.DataFrame(rows)


def test_cells_pair_by_setting_and_the_ranks_are_scipys(tmp_path):
    df = frame(tmp_path, {"attn": (6, 3), "mlp": (8, 5), "both": (7, 1), "none": (2, 2)})
    paired, summary = agreement(df, "arc_e")
    by = paired.set_index("placement")
    assert by.loc["mlp", "loglik"] == 80 and by.loc["mlp", "generate"] == 50 and by.loc["mlp", "questions"] == 10
    assert by.loc["attn", "same pick"] == 30 and by.loc["attn", "no answer"] == 70  # the right ones agree
    assert by.loc["attn", "same pick when named"] == 100
    found = summary["all cells"]
    assert found["spearman"] == pytest.approx(stats.spearmanr(by["loglik"], by["generate"])[0])
    assert found["kendall"] == pytest.approx(stats.kendalltau(by["loglik"], by["generate"])[0])
    assert found["cells"] == 4 and 0 < found["spearman"] < 1  # both swaps mlp/attn against both: not identical
    assert "trained cells" not in summary  # no base among them


def test_the_base_is_left_out_of_the_second_correlation(tmp_path):
    df = frame(tmp_path, {"attn": (6, 3), "mlp": (8, 1), "both": (7, 2), "none": (0, 0)})
    df.loc[df["placement"] == "none", ["adapter", "placement", "size"]] = ["none", None, None]
    summary = agreement(df, "arc_e")[1]
    assert summary["all cells"]["cells"] == 4 and summary["trained cells"]["cells"] == 3
    assert summary["trained cells"]["spearman"] == pytest.approx(-1.0)  # the adapters' order reversed
    expected = stats.spearmanr([6, 8, 7, 0], [3, 1, 2, 0])[0]  # the base lowest under both lifts it
    assert summary["all cells"]["spearman"] == pytest.approx(expected) and expected > -0.5


def test_fewer_than_three_paired_cells_is_one_line(tmp_path):
    df = frame(tmp_path, {"attn": (6, 3), "mlp": (8, 5)})
    assert len(cells(df, "arc_e")) == 2
    with pytest.raises(AgreementError, match="arc_e: 2 cells scored by both loglik and generate; ranks need 3"):
        agreement(df, "arc_e")
