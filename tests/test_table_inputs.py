"""What a table is made of: likelihood jobs get a second table of acc_norm, scored from the prediction rows'
``correct_norm``; and a study whose results.json files were never kept is tabled again from its jobs.csv, with the
Wilson interval of each cell's pooled counts."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from analysis.__main__ import main, tables
from analysis.collect import load
from analysis.tables import table
from analysis.uncertainty import Cell, holm, interval
from llm_adapters.stats.intervals import wilson
from tests.helpers.handmade import add_set, handmade_job


@pytest.fixture
def study(tmp_path):
    rng = np.random.default_rng(0)
    for adapter in ("lora", "series"):
        for seed in (1, 2):
            acc, norm = rng.random(40) < 0.4, rng.random(40) < 0.7  # acc_norm clearly different from acc
            handmade_job(tmp_path / "runs", f"{adapter}-{seed}", adapter, seed, acc.tolist(), norm.tolist())
    return tmp_path / "runs"


def test_acc_norm_has_its_own_table_scored_from_correct_norm(study, tmp_path):
    df = load([study])
    acc, norm = table(df, "commonsense"), table(df, "commonsense", "accn")
    for adapter in ("lora", "series"):
        jobs = df[df["adapter"] == adapter]
        row = norm[norm["adapter"] == adapter].iloc[0]
        assert row["arc_e"] == pytest.approx(jobs["accn/arc_e"].mean())
        assert row["arc_e"] != pytest.approx(acc[acc["adapter"] == adapter]["arc_e"].iloc[0])
        per_seed = [
            {f"arc_e/{i}": float(r["correct_norm"]) for i, r in enumerate(map(json.loads, lines))}
            for lines in ((study / f"{adapter}-{s}" / "predictions.jsonl").read_text().splitlines() for s in (1, 2))
        ]
        assert [row["arc_e low"], row["arc_e high"]] == pytest.approx(interval(Cell.of(per_seed)))
    assert pd.isna(norm["paper Avg"]).all()  # the paper reports no acc_norm
    tables([study], tmp_path / "out")
    assert (tmp_path / "out" / "commonsense_norm_table.md").is_file()


def test_generation_jobs_have_no_acc_norm_table(tmp_path):
    for seed in (1, 2):
        handmade_job(tmp_path / "runs", f"g{seed}", "lora", seed, [1, 0, 1, 1], [0, 0, 0, 0], method="generate")
    assert table(load([tmp_path / "runs"]), "commonsense", "accn").empty
    written = tables([tmp_path / "runs"], tmp_path / "out")
    assert "commonsense_table" in written and "commonsense_norm_table" not in written


def test_a_jobs_csv_is_tabled_again_with_the_wilson_interval_of_its_counts(study, tmp_path):
    tables([study], tmp_path / "first")
    jobs = pd.read_csv(tmp_path / "first" / "jobs.csv")
    jobs["job"] = [str(tmp_path / "gone" / str(i)) for i in range(len(jobs))]  # no predictions.jsonl left anywhere
    jobs.to_csv(tmp_path / "jobs.csv", index=False)
    assert main(["tables", "--jobs", str(tmp_path / "jobs.csv"), "--out", str(tmp_path / "again")]) == 0
    again = pd.read_csv(tmp_path / "again" / "commonsense_table.csv")
    first = pd.read_csv(tmp_path / "first" / "commonsense_table.csv")
    assert again["arc_e"].tolist() == pytest.approx(first["arc_e"].tolist())
    for _, row in again.iterrows():
        mine = jobs[jobs["adapter"] == row["adapter"]]
        correct = round(float((mine["acc/arc_e"] * mine["n/arc_e"] / 100).sum()))
        assert [row["arc_e low"], row["arc_e high"]] == pytest.approx(wilson(correct, int(mine["n/arc_e"].sum())))
        assert row["basis"] == "counts" and [row["Avg low"], row["Avg high"]] == [row["arc_e low"], row["arc_e high"]]


def test_a_file_that_is_no_jobs_csv_is_one_line(tmp_path, capsys):
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    assert main(["tables", "--jobs", str(tmp_path / "other.csv")]) == 2
    assert re.fullmatch(r"error: --jobs .*other.csv: not a jobs.csv .*\(no job column\)\n", capsys.readouterr().err)
    assert main(["tables", "--jobs", str(tmp_path / "missing.csv")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_pair_is_compared_on_the_average_of_its_sets_and_on_chosen_sets(tmp_path, capsys):
    from analysis.compare import CompareError, comparisons

    rng = np.random.default_rng(4)
    for adapter, rate in (("lora", 0.7), ("series", 0.4)):
        handmade_job(tmp_path / "runs", adapter, adapter, 1, (rng.random(60) < rate).tolist(), [False] * 60)
        add_set(tmp_path / "runs" / adapter, "boolq", (rng.random(80) < rate).tolist())
        add_set(tmp_path / "runs" / adapter, "piqa", (rng.random(50) < 0.5).tolist())
    df = load([tmp_path / "runs"])
    found = comparisons(df).set_index("set")
    assert list(found.index) == ["boolq", "piqa", "arc_e", "Avg"]
    assert found.loc["Avg", "difference"] == pytest.approx(found.loc[["boolq", "piqa", "arc_e"], "difference"].mean())
    assert found["p_holm"].tolist() == pytest.approx(holm(found["p"].tolist()))  # one family, the average included
    chosen = comparisons(df, only=["arc_e", "boolq"]).set_index("set")
    assert list(chosen.index) == ["boolq", "arc_e", "Avg"]
    assert chosen.loc["Avg", "difference"] == pytest.approx(chosen.loc[["boolq", "arc_e"], "difference"].mean())
    with pytest.raises(CompareError, match="--sets obqa: no job reports it"):
        comparisons(df, only=["obqa"])
    assert main(["compare", str(tmp_path / "runs"), "--sets", "arc_e,boolq", "--out", str(tmp_path / "c")]) == 0
    assert "lora − series on Avg:" in capsys.readouterr().out
