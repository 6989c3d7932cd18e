"""The figures say only what the data holds: placements and lines that have data, seeds as dots, the zero-shot
baseline as a line, sizes on a real axis, and no file where there is nothing to plot."""

import matplotlib
import pandas as pd

from analysis.figures import configuration_figure, placement_figure

matplotlib.use("Agg")


def _jobs(rows):
    return pd.DataFrame([{"status": "ok", "acc/arc_e": acc, **row} for row, acc in rows])


def test_placement_figure_draws_only_present_placements_with_the_zero_shot_line(tmp_path):
    df = _jobs(
        [
            ({"adapter": "lora", "placement": "both", "seed": 1}, 30.0),
            ({"adapter": "lora", "placement": "both", "seed": 2}, 40.0),
            ({"adapter": "none", "placement": None, "seed": 1}, 1.0),
        ]
    )
    drawn = placement_figure(df, ["arc_e"], tmp_path / "p.png")
    assert drawn == {"lora": {"both": 35.0}}
    assert (tmp_path / "p.png").is_file()
    assert placement_figure(_jobs([({"adapter": "none", "placement": None}, 1.0)]), ["arc_e"], tmp_path / "q.png") == {}
    assert not (tmp_path / "q.png").exists()


def test_configuration_figure_one_line_per_adapter_and_placement(tmp_path):
    df = _jobs(
        [
            ({"adapter": "parallel", "placement": "mlp", "size": 64}, 7.0),
            ({"adapter": "parallel", "placement": "mlp", "size": 256}, 3.0),
            ({"adapter": "parallel", "placement": "attn", "size": 64}, 4.0),
            ({"adapter": "lora", "placement": "both", "size": 32}, 9.0),  # one size: no line
        ]
    )
    drawn = configuration_figure(df, ["arc_e"], tmp_path / "c.png")
    assert drawn == {"parallel @ mlp": {64.0: 7.0, 256.0: 3.0}}  # not averaged with parallel @ attn
    assert (tmp_path / "c.png").is_file()
    assert configuration_figure(df[df["adapter"] == "lora"], ["arc_e"], tmp_path / "d.png") == {}
    assert not (tmp_path / "d.png").exists()


def test_chance_and_majority_rates_come_from_the_questions(tmp_path):
    """Chance is each question's 1 / (options its prompt names), the majority rate the most frequent gold answer's
    share; both drawn as lines on multiple-choice sets, none on math sets."""
    import json

    from analysis.figures import reference_rates

    rows = [
        {
            "id": "arc_e/0",
            "prompt": "Answer1: a ...\n\nAnswer format: answer1/answer2/answer3/answer4\n",
            "answer": "answer1",
        },
        {"id": "arc_e/1", "prompt": "Answer1: a ...\n\nAnswer format: answer1/answer2/answer3", "answer": "answer1"},
        {"id": "boolq/0", "prompt": "true or false", "answer": "true"},
        {"id": "boolq/1", "prompt": "true or false", "answer": "false"},
    ]
    (tmp_path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ok = pd.DataFrame([{"job": str(tmp_path), "status": "ok"}])
    chance, majority = reference_rates(ok, ["arc_e", "boolq"])
    assert chance == (100 * (1 / 4 + 1 / 3) / 2 + 50) / 2 and majority == (100 + 50) / 2
    assert reference_rates(ok, ["gsm8k"]) is None
