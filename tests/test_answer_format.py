"""``dataset.answer_format=text`` and ``eval.prompt=paper_text``: a commonsense record's response names its gold
option's text instead of its label, on every record of the four training splits beside the repo; the likelihood
continuations name each option's text; bad input is one line; the default leaves every earlier job's hash as it was."""

from __future__ import annotations

import json

import pytest

from llm_adapters.data.options import RESPONSE, as_cloze, as_text, option_text, parsed
from llm_adapters.data.sets import eval_set
from llm_adapters.errors import DataError
from llm_adapters.evaluation.likelihood import options, pairs, request
from llm_adapters.job.config import ConfigError, validate
from llm_adapters.job.resume import config_hash
from tests.helpers.configs import make_config

RECORD = {
    "instruction": "Please choose the correct answer to the question: Which keeps spores out?\n\n"
    "Answer1: safety goggles Answer2: breathing mask Answer3: rubber gloves\n\n"
    "Answer format: answer1/answer2/answer3",
    "input": "",
    "output": "the correct answer is answer2",
    "answer": "answer2",
}
SPLITS = ["ARC-Easy", "ARC-Challenge", "boolq", "openbookqa"]


def test_a_label_becomes_its_options_text_and_true_or_false_stays():
    assert as_text("f", RECORD, 0)["output"] == "the correct answer is breathing mask"
    assert option_text("f", RECORD, 0, "answer3") == "rubber gloves" and option_text("f", RECORD, 0, "true") == "true"
    with pytest.raises(DataError, match="f record 0: answer 'answer4' but 3 options"):
        option_text("f", RECORD, 0, "answer4")
    with pytest.raises(DataError, match=r"dataset x record 7: dataset.answer_format=text or cloze needs the response"):
        as_text("dataset x", {**RECORD, "output": "answer2"}, 7)


@pytest.mark.parametrize("split", SPLITS)
def test_every_training_record_beside_the_repo_gets_its_options_text(shared_data, split):
    records = json.loads((shared_data / "dataset" / split / "train.json").read_text())
    for i, record in enumerate(records):
        text = as_text(split, record, i)["output"].removeprefix(RESPONSE)
        if split == "boolq":
            assert text == record["answer"] in ("true", "false")
        else:
            number = int(record["answer"].removeprefix("answer"))
            assert text == parsed(split, record, i)[1][number - 1] and text in record["instruction"]


def test_paper_text_continuations_name_the_option_texts_after_the_papers_prompt():
    spec, labels = eval_set("arc_e"), options(eval_set("arc_e"), RECORD, 0)
    mine = pairs(spec, RECORD, 0, labels, {"prompt": "paper_text"})
    assert mine == request(RECORD, ["safety goggles", "breathing mask", "rubber gloves"])
    assert [c for _, c in mine][1].endswith("the correct answer is breathing mask")
    assert {c for c, _ in mine} == {c for c, _ in pairs(spec, RECORD, 0, labels, {"prompt": "paper"})}


def test_the_training_set_is_rewritten_before_any_model_and_cached_apart(tmp_path, shared_data):
    from llm_adapters.data import loading

    common = [f"paths.data_dir={shared_data}", f"paths.data_cache={tmp_path}", "dataset=commonsense_mix"]
    common += ["eval.datasets=[obqa]", "train.max_examples=50"]
    label = loading.load_data(make_config(*common))
    text = loading.load_data(make_config(*common, "dataset.answer_format=text"))
    assert label.questions() == text.questions() and label.train_id != text.train_id
    outputs = [(a["output"], b["output"]) for a, b in zip(label.train.to_list(), text.train.to_list(), strict=True)]
    assert any(a != b for a, b in outputs) and all(b.startswith(RESPONSE) for _, b in outputs)
    cloze = loading.load_data(make_config(*common, "dataset.answer_format=cloze"))
    assert cloze.train_id not in (label.train_id, text.train_id)
    assert [r["output"] for r in cloze.train.to_list()] == [b for _, b in outputs]
    assert not any("Answer1:" in q for q in cloze.questions()) and any("Answer1:" in q for q in text.questions())


def test_a_bad_answer_format_is_one_line_and_the_default_keeps_old_hashes():
    with pytest.raises(ConfigError, match=r"dataset\.answer_format must be one of label, text"):
        validate(make_config("dataset=commonsense_mix", "dataset.answer_format=labels"))
    resolved = make_config("dataset=commonsense_mix")
    from omegaconf import OmegaConf

    now = OmegaConf.to_container(resolved, resolve=True)
    before = {**now, "dataset": {k: v for k, v in now["dataset"].items() if k != "answer_format"}}
    assert config_hash(now) == config_hash(before)
    text = {**now, "dataset": {**now["dataset"], "answer_format": "text"}}
    assert config_hash(text) != config_hash(now)


def test_cloze_leaves_the_options_out_of_the_instruction_and_boolq_as_it_is(shared_data):
    cloze = as_cloze("f", RECORD, 0)
    assert cloze["instruction"] == "Please choose the correct answer to the question: Which keeps spores out?"
    assert cloze["output"] == "the correct answer is breathing mask"
    spec, labels = eval_set("arc_e"), options(eval_set("arc_e"), RECORD, 0)
    mine = pairs(spec, RECORD, 0, labels, {"prompt": "paper_cloze"})
    assert mine == request(cloze, ["safety goggles", "breathing mask", "rubber gloves"])
    assert all("Answer1" not in context for context, _ in mine)
    boolq = json.loads((shared_data / "dataset" / "boolq" / "train.json").read_text())[0]
    assert as_cloze("boolq", boolq, 0) == as_text("boolq", boolq, 0) == boolq  # true/false: their own texts
