"""The paper's scoring rules (numbers, option letters, label words) and the fixed protocol's option rule."""

import json

import pytest
from omegaconf import OmegaConf

from llm_adapters.data.sets import EVAL_SETS
from llm_adapters.evaluation.scoring import extract_choice, extract_label, extract_number, number_correct, score
from tests.helpers.configs import CONF


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


def protocol(name: str):
    return OmegaConf.load(CONF / "protocol" / f"{name}.yaml")


@pytest.mark.parametrize(
    ("text", "first_capital", "option"),
    [
        ("Each box holds 3. The answer is (C).", "E", "C"),  # the paper's rule takes the E of "Each"
        ("(A) is wrong, so the answer is (D).", "A", "D"),
        ("The answer is B", "B", "B"),
        ("the answer is: c", None, None),
        ("no letters here", None, None),
    ],
)
def test_choice_rules(text, first_capital, option):
    assert extract_choice(text, "first_capital") == first_capital
    assert extract_choice(text, "option") == option


def test_label_rule_takes_the_first_label_word():
    labels = EVAL_SETS["boolq"].labels
    assert extract_label("the correct answer is false, not true", labels) == "false"
    assert extract_label("True", labels) is None  # case-sensitive, as commonsense_evaluate.py searched
    assert extract_label("answer3 then answer1", EVAL_SETS["siqa"].labels) == "answer3"


@pytest.mark.parametrize(("rule", "correct"), [("paper", 109), ("fixed", 123)])
def test_aqua_rules_on_the_stored_rationales(shared_data, rule, correct):
    records = json.loads((shared_data / "dataset" / "AQuA" / "test.json").read_text())
    metrics, rows = score(
        [r["output"] for r in records], [r["answer"] for r in records], EVAL_SETS["aqua"], protocol(rule)
    )
    assert (metrics["correct"], metrics["n"]) == (correct, 254)
    assert sum(row["correct"] for row in rows) == correct


@pytest.mark.parametrize("name", ["boolq", "piqa", "siqa", "winogrande", "arc_e", "arc_c", "obqa"])
def test_commonsense_rule_on_the_stored_outputs(shared_data, name):
    """Each stored output is "the correct answer is <label>": the rule must find every label."""
    spec = EVAL_SETS[name]
    records = json.loads((shared_data / spec.path).read_text())
    metrics, _ = score([r["output"] for r in records], [r["answer"] for r in records], spec, protocol("paper"))
    assert metrics["correct"] == metrics["n"] == len(records)
