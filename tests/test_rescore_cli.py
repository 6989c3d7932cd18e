"""`python -m llm_adapters.rescore`: re-scoring saved generations without a model, with the job's rules."""

import json
import subprocess
import sys

import pytest

from llm_adapters.stats.intervals import wilson
from tests.helpers.configs import ROOT


def score_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llm_adapters.rescore", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_aqua_paper_and_fixed_on_the_test_file(shared_data, tmp_path):
    aqua = shared_data / "dataset" / "AQuA" / "test.json"
    paper = score_cli("--dataset", "aqua", "--predictions", str(aqua))
    assert paper.returncode == 0, paper.stderr
    assert json.loads(paper.stdout) == {"accuracy": 100 * 109 / 254, "n": 254, "correct": 109} | {
        "interval": wilson(109, 254)
    }
    fixed = score_cli("--dataset", "aqua", "--predictions", str(aqua), "--protocol", "fixed")
    assert json.loads(fixed.stdout)["correct"] == 123


def test_jsonl_with_generation_and_write(tmp_path):
    predictions = tmp_path / "preds.jsonl"
    lines = [
        {"generation": "5 + 3 = 8. The answer is 8.", "answer": "8"},
        {"generation": "It is 1,000 - 1 = 999", "answer": "999.0"},
        {"output": "no idea", "answer": "3"},
    ]
    predictions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = score_cli("--dataset", "gsm8k", "--predictions", str(predictions), "--write", str(tmp_path / "out.jsonl"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["correct"] == 2
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["extracted"] for row in rows] == [8.0, 999.0, None]
    assert [row["correct"] for row in rows] == [True, True, False]


def test_bad_predictions_file_is_one_line_on_stderr(tmp_path):
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text(json.dumps({"generation": "8"}) + "\n")
    result = score_cli("--dataset", "gsm8k", "--predictions", str(predictions))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {predictions}: record 0: needs 'answer' and 'output' or 'generation'"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no records to score (the file is empty)"),
        ("[1, 2]", "record 0: a JSON object is needed, not 1"),
        ('{"generation": null, "answer": "8"}\n', "record 0: 'generation' must be a string (got None)"),
        ('{"output": "8", "answer": null}\n', "record 0: 'answer' must be a string or a number (got None)"),
        (
            '{"output": "8", "answer": "8"}\n{"output": "8", answer}\n',
            "not valid JSON (Expecting property name enclosed in double quotes at line 2)",
        ),
    ],
)
def test_unusable_predictions_are_one_line_naming_the_record(tmp_path, content, message):
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text(content)
    result = score_cli("--dataset", "gsm8k", "--predictions", str(predictions))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {predictions}: {message}"


def test_the_default_runs_own_predictions_rescore(tmp_path):
    """The synthetic held-out split (the embedded default's evaluation set) is scored by the numeric rule."""
    rows = [
        {"generation": "5 bags of 5 is 5 * 5 = 25. The answer is 25.", "answer": "25"},
        {"generation": "3 + 4 = 7. The answer is 7.", "answer": "8"},
    ]
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = score_cli("--dataset", "synthetic_math", "--predictions", str(path))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"accuracy": 50.0, "n": 2, "correct": 1, "interval": wilson(1, 2)}
