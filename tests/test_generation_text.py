"""``eval.method=generate`` with ``eval.prompt=paper_text``/``paper_cloze``: the response is read for the option text it
names (the generation cross-check of likelihood scoring for models trained with ``dataset.answer_format=cloze``)."""

from __future__ import annotations

import json

import pytest

from llm_adapters.data.options import RESPONSE, as_text
from llm_adapters.data.sets import EVAL_SETS, eval_set
from llm_adapters.evaluation import generation
from llm_adapters.evaluation.likelihood import options, pairs
from llm_adapters.evaluation.scoring import extract_option_text, score
from llm_adapters.job.config import ConfigError, validate
from tests.helpers.configs import make_config
from tests.test_answer_format import RECORD

TEXTS = {"answer1": "salt", "answer2": "salt water", "answer3": "Fresh  Water"}
PROTOCOL = {"choice_extraction": "option"}


@pytest.mark.parametrize(
    ("response", "label"),
    [
        ("the correct answer is salt water", "answer2"),
        ("the correct answer is salt", "answer1"),
        ("The correct answer is SALT WATER.", "answer2"),  # case, trailing full stop
        ("the correct answer is salt water, because it is heavier", "answer2"),  # the longest option that begins it
        ("the correct answer is fresh water", "answer3"),  # spacing and case in the option
        ("salt water", "answer2"),  # no 'answer is': the whole response
        ("the correct answer is salty", None),  # 'salt' only at a word boundary
        ("the correct answer is answer2", None),  # a label is not an option's text
        ("the correct answer is", None),
    ],
)
def test_the_option_a_response_names(response, label):
    assert extract_option_text(response, TEXTS) == label


def test_case_tells_options_apart_only_when_the_response_matches_one_as_written():
    genotypes = {"answer1": "R", "answer2": "rr", "answer3": "Rr", "answer4": "RR"}  # ARC-Challenge test 1004
    assert extract_option_text("the correct answer is Rr", genotypes) == "answer3"
    assert extract_option_text("the correct answer is rR", genotypes) is None  # case-blind: rr, Rr and RR alike
    assert extract_option_text("the correct answer is salt", {"answer1": "Salt", "answer2": "SALT"}) is None


def test_cloze_prompts_are_the_likelihood_contexts_and_the_options_are_read_from_the_record():
    spec = eval_set("arc_e")
    labels = options(spec, RECORD, 0)
    for style in ("paper_text", "paper_cloze"):
        prompts, offered = generation.questions(spec, [RECORD], {"prompt": style})
        assert offered == [{"answer1": "safety goggles", "answer2": "breathing mask", "answer3": "rubber gloves"}]
        assert prompts[0].rstrip() == pairs(spec, RECORD, 0, labels, {"prompt": style})[0][0]
    assert "Answer1:" not in generation.questions(spec, [RECORD], {"prompt": "paper_cloze"})[0][0]
    assert generation.questions(spec, [RECORD], {"prompt": None})[1] is None  # the paper's label reading
    with pytest.raises(ConfigError, match=r"eval\.prompt=paper_cloze reads the option text a response names: gsm8k"):
        generation.questions(eval_set("gsm8k"), [{"instruction": "2+2?", "answer": "4"}], {"prompt": "paper_cloze"})


def test_the_scores_count_the_responses_that_name_the_gold_options_text(monkeypatch):
    said = ["the correct answer is breathing mask", "the correct answer is rubber gloves", "I do not know"]
    monkeypatch.setattr(generation, "generate", lambda *args, **kwargs: said)
    cfg = {"prompt": "paper_cloze"}
    metrics, rows = generation.evaluate_set(_Model(), None, eval_set("arc_e"), [RECORD] * 3, cfg, _protocol(), "cpu")
    assert [r["extracted"] for r in rows] == ["answer2", "answer3", None]
    assert metrics["correct"] == 1 and metrics["n"] == 3 and rows[0]["correct"] and not rows[1]["correct"]


def _protocol():
    return {**PROTOCOL, "eval_adapter_dropout": False, "commonsense_attention_mask": True}


class _Model:  # what evaluate_set touches before generating
    def eval(self):
        return self


@pytest.fixture(autouse=True)
def _no_adapter_dropout(monkeypatch):
    monkeypatch.setattr(generation, "set_adapter_dropout", lambda model, active: None)


@pytest.mark.parametrize("name", ["arc_e", "arc_c", "obqa", "piqa", "siqa", "winogrande", "boolq"])
def test_the_gold_response_of_every_test_question_beside_the_repo_is_read_as_its_gold_label(shared_data, name):
    """On the real test files: the response the cloze format teaches for the gold option scores correct, except where
    another option has the same text (counted: the response cannot say which is meant)."""
    spec = EVAL_SETS[name]
    path = shared_data / spec.path
    if not path.is_file():
        pytest.skip(f"{path} is not beside the repo")
    records = json.loads(path.read_text())
    _, offered = generation.questions(spec, records, {"prompt": "paper_cloze"})
    gold = [as_text(name, {**r, "output": RESPONSE + r["answer"]}, i)["output"] for i, r in enumerate(records)]
    metrics, _ = score(gold, [r["answer"] for r in records], spec, PROTOCOL, offered)
    twins = sum(list(texts.values()).count(texts[r["answer"]]) > 1 for texts, r in zip(offered, records, strict=True))
    assert metrics["correct"] == len(records) - twins and twins <= 1  # SIQA 669: 'accomplished' twice


def test_generate_takes_the_option_text_styles_and_no_others():
    validate(make_config("eval=commonsense", "eval.method=generate", "eval.prompt=paper_cloze"))
    with pytest.raises(ConfigError, match=r"eval\.prompt=lm_eval: eval\.method=generate has no such prompt style"):
        validate(make_config("eval=commonsense", "eval.method=generate", "eval.prompt=lm_eval"))
