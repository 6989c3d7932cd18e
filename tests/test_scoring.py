"""evaluate.py's numeric rule: commas removed, last number, |pred - gold| <= 0.001, no number is wrong."""

import json

import pytest

from llm_adapters.scoring import extract_number, number_correct


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 42.", 42.0),
        ("5 + 3 = 8. The answer is 8", 8.0),
        ("It costs 1,234 dollars.", 1234.0),
        ("The temperature fell to -15 degrees.", -15.0),
        ("Each one gets 2.5 cookies.", 2.5),
        ("7 - 3 = 4 and then 4.", 4.0),
        ("no digits here", None),
        ("", None),
    ],
)
def test_extract_number(text, expected):
    assert extract_number(text) == expected


def test_number_correct_tolerance_and_missing():
    assert number_correct(4.0, "4")
    assert number_correct(576.0005, "576.0")
    assert not number_correct(576.01, "576.0")
    assert not number_correct(None, "0")


@pytest.mark.parametrize(
    ("name", "correct", "total"),
    # The reference doc's counts for the model-written rationales stored in each test file's `output`.
    [
        ("AddSub", 370, 395),
        ("MultiArith", 560, 600),
        ("SingleEq", 484, 508),
        ("SVAMP", 803, 1000),
        ("gsm8k", 771, 1319),
    ],
)
def test_paper_rule_on_real_test_files(shared_data, name, correct, total):
    records = json.loads((shared_data / "dataset" / name / "test.json").read_text())
    assert len(records) == total
    assert sum(number_correct(extract_number(r["output"]), r["answer"]) for r in records) == correct
