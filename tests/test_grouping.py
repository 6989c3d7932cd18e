"""Tables never pool different settings: jobs share a cell only when they differ in the seed alone, whatever key
was varied (one that is no axis, like ``train.lr`` or ``eval.num_beams``, included), and a data file that changed
between jobs splits them too."""

from __future__ import annotations

import pytest

from analysis.collect import load, settings
from analysis.tables import formatted, table
from llm_adapters.files import read_results, write_json
from llm_adapters.job.recipe import run
from tests.helpers.configs import FAST, make_config

JOB = [*FAST, "train.max_steps=2", "eval.max_new_tokens=4", "dataset.test_size=4"]


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweeps")
    for name, overrides in {
        "lr/a": ["train.lr=1e-3"],
        "lr/b": ["train.lr=3e-3"],
        "beams/a": ["eval.num_beams=1"],
        "beams/b": ["eval.num_beams=2"],
        "seeds/a": ["seed=1"],
        "seeds/b": ["seed=2"],
    }.items():
        assert run(make_config(*JOB, *overrides), root / name)["status"] == "ok"
    return root


@pytest.mark.parametrize(
    ("sweep", "column", "values"), [("lr", "train.lr", [1e-3, 3e-3]), ("beams", "eval.num_beams", [1, 2])]
)
def test_a_sweep_over_a_key_that_is_no_axis_is_one_row_per_value(sweeps, sweep, column, values):
    numbers = table(load([sweeps / sweep]), "math")
    assert len(numbers) == 2 and sorted(numbers[column]) == values
    assert list(numbers["seeds"]) == [1, 1]
    assert column in formatted(numbers, ("**", "**")).columns  # the varied key is a column of the table


def test_seeds_alone_are_pooled(sweeps):
    numbers = table(load([sweeps / "seeds"]), "math")
    assert len(numbers) == 1 and numbers["seeds"].iloc[0] == 2
    assert numbers.attrs["settings"] == ["model", "adapter"]  # nothing else differs


def test_a_changed_data_file_splits_the_cell(sweeps, tmp_path):
    for name, digest in (("a", "0" * 64), ("b", "f" * 64)):
        record = read_results(sweeps / "seeds" / name / "results.json")
        (tmp_path / name).mkdir()
        write_json(tmp_path / name / "results.json", {**record, "data": {"train": {"size": 1, "sha256": digest}}})
    numbers = table(load([tmp_path]), "math")
    assert len(numbers) == 2 and "data/train" in numbers.attrs["settings"]


def test_settings_flatten_the_config_without_seed_paths_or_logging():
    found = settings(
        {"seed": 1, "paths": {"data_dir": "x"}, "logger": {"mode": "offline"}, "train": {"lr": 0.1}}
        | {"eval": {"datasets": ["gsm8k", "aqua"]}}
    )
    assert found == {"cfg/train.lr": 0.1, "cfg/eval.datasets": '["gsm8k", "aqua"]'}


def test_cells_carry_intervals_and_comparisons_are_paired(sweeps, tmp_path):
    from analysis.__main__ import main
    from analysis.compare import comparisons

    numbers = table(load([sweeps / "seeds"]), "math")
    row = numbers.iloc[0]
    assert row["synthetic_math low"] <= row["synthetic_math"] <= row["synthetic_math high"]
    assert row["synthetic_math n×k"] == "4 × 2" and row["basis"] == "questions × seeds"
    cell = formatted(numbers, ("**", "**"))["synthetic_math"].iloc[0]
    assert cell.startswith(f"{row['synthetic_math']:.1f} [") and cell.endswith("(4 × 2)")  # one row: nothing bold
    found = comparisons(load([sweeps / "lr"]), by="train.lr")
    assert len(found) == 1 and bool(found["paired"].iloc[0]) and found["set"].iloc[0] == "synthetic_math"
    assert main(["compare", str(sweeps / "lr"), "--by", "train.lr", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "comparisons.md").read_text().count(" − ") == 1 and (tmp_path / "comparisons.csv").is_file()


@pytest.mark.parametrize(
    ("where", "by", "message"),
    [
        ("seeds", None, "error: only one cell in the math results: nothing to compare"),
        (
            "lr",
            "placement",
            "error: --by placement: no such axis varies in these results (they vary in model, adapter, train.lr)",
        ),
        ("nothing", None, "error: no results under"),
    ],
)
def test_compare_bad_input_is_one_line_and_exit_2(sweeps, tmp_path, capsys, where, by, message):
    from analysis.__main__ import main

    (sweeps / "nothing").mkdir(exist_ok=True)
    assert main(["compare", str(sweeps / where), *(["--by", by] if by else []), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().startswith(message)


def test_old_results_without_predictions_get_intervals_from_their_counts(sweeps, tmp_path):
    record = read_results(sweeps / "seeds" / "a" / "results.json")
    (tmp_path / "old").mkdir()
    write_json(tmp_path / "old" / "results.json", record)  # no predictions.jsonl beside it
    numbers = table(load([tmp_path]), "math")
    row = numbers.iloc[0]
    m = record["eval"]["synthetic_math"]
    from llm_adapters.stats.intervals import wilson

    assert row["basis"] == "counts" and [row["synthetic_math low"], row["synthetic_math high"]] == wilson(
        m["correct"], m["n"]
    )
