"""The paper's prompts, byte for byte: expected texts are written out literally, not rebuilt with the same code."""

import json

import pytest

from llm_adapters.data.sets import EVAL_SETS
from llm_adapters.data.templates import evaluation_prompt, response_text, training_prompt

INSTRUCTION = (
    "There are 7 crayons in the drawer . Mary took 3 crayons out of the drawer . How many crayons are there now ? "
)
OUTPUT = (
    "\nA: There were 7 crayons in the drawer. Mary took 3 out, so now there are 7 - 3 = 4 crayons. The answer is 4."
)

TRAIN_EXPECTED = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.  \n"
    "\n"
    "                ### Instruction:\n"
    "                There are 7 crayons in the drawer . Mary took 3 crayons out of the drawer . "
    "How many crayons are there now ? \n"
    "                \n"
    "                ### Response:\n"
    "                \n"
    "A: There were 7 crayons in the drawer. Mary took 3 out, so now there are 7 - 3 = 4 crayons. The answer is 4."
)

EVAL_EXPECTED = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request. \n"
    "\n"
    "                ### Instruction:\n"
    "                There are 7 crayons in the drawer . Mary took 3 crayons out of the drawer . "
    "How many crayons are there now ? \n"
    "\n"
    "                ### Response:\n"
    "                "
)


def test_training_prompt_matches_finetune_py():
    assert training_prompt(INSTRUCTION, OUTPUT) == TRAIN_EXPECTED


def test_user_prompt_is_training_prompt_without_output():
    assert training_prompt(INSTRUCTION) == TRAIN_EXPECTED[: TRAIN_EXPECTED.index("\nA: There were")]


def test_evaluation_prompt_matches_evaluate_py():
    assert evaluation_prompt(INSTRUCTION) == EVAL_EXPECTED


def test_prompts_for_a_real_addsub_record(shared_data):
    record = json.loads((shared_data / "dataset" / "AddSub" / "test.json").read_text())[0]
    assert record["instruction"] == INSTRUCTION
    assert evaluation_prompt(record["instruction"]) == EVAL_EXPECTED
    assert training_prompt(record["instruction"], record["output"]) == TRAIN_EXPECTED


def test_response_text_stops_at_a_generated_second_marker():
    assert response_text("\n  The answer is 4.  ") == "The answer is 4."
    assert response_text(" 12 apples.\n### Response: 99") == "12 apples."


# The two templates written out independently of llm_adapters.data.templates, to check real records of every set.
TRAIN_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.  \n\n"
    "                ### Instruction:\n                {}\n                \n"
    "                ### Response:\n                {}"
)
EVAL_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request. \n\n"
    "                ### Instruction:\n                {}\n\n                ### Response:\n                "
)


@pytest.mark.parametrize("name", sorted(set(EVAL_SETS) - {"hellaswag"}))
def test_prompts_for_real_records_of_every_set(shared_data, name):
    records = json.loads((shared_data / EVAL_SETS[name].path).read_text())
    for record in (records[0], records[-1]):
        assert evaluation_prompt(record["instruction"]) == EVAL_TEMPLATE.format(record["instruction"])
        assert training_prompt(record["instruction"], record["output"]) == TRAIN_TEMPLATE.format(
            record["instruction"], record["output"]
        )
