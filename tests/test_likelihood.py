"""``eval.method=loglik``: the options of every commonsense record parse, the batched log-likelihoods (shared context
cache, and whole sequences for virtual-token adapters) equal a plain one-option-at-a-time forward pass, acc and
acc_norm follow lm-eval's definitions, and a method that cannot score a set is refused before any weights."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from llm_adapters.data.builtin_tokenizer import build_tokenizer
from llm_adapters.data.sets import EVAL_SETS, eval_set
from llm_adapters.errors import DataError
from llm_adapters.evaluation import METHODS, method
from llm_adapters.evaluation.likelihood import evaluate_set, options, request
from llm_adapters.evaluation.likelihood_batches import encode, loglikelihoods
from llm_adapters.evaluation.lm_eval_prompts import lm_eval_pairs
from llm_adapters.job.config import ConfigError, validate
from tests.helpers.configs import make_config
from tests.helpers.models import TINY_CONFIGS

COMMONSENSE = [name for name, spec in EVAL_SETS.items() if spec.domain == "commonsense"]


def records(n: int = 7) -> list[dict]:
    """Short multiple-choice records in the LLM-Adapters format, with 2 to 4 options."""
    out = []
    for i in range(n):
        k = 2 + i % 3
        choices = " ".join(f"Answer{j + 1}: {v}" for j, v in enumerate(range(i, i + k)))
        fmt = "/".join(f"answer{j + 1}" for j in range(k))
        instruction = f"Please choose the correct answer to the question: {i} + 1?\n\n{choices}\n\nAnswer format: {fmt}"
        out.append({"instruction": instruction, "input": "", "output": "", "answer": f"answer{1 + i % k}"})
    return out


def model_of(arch: str):
    """A tiny model of the family with the built-in tokenizer's vocabulary and room for the paper's prompt."""
    torch.manual_seed(0)
    room = {"gpt2": {"n_positions": 512}, "bloom": {}}.get(arch, {"max_position_embeddings": 512})
    config = AutoConfig.for_model(arch, vocab_size=512, **{**TINY_CONFIGS[arch], **room})
    return AutoModelForCausalLM.from_config(config).eval()


def plain(model, tokenizer, context: str, continuation: str) -> float:
    """One option alone, no padding, no cache: the sum of its tokens' log-probabilities."""
    context_ids, cont = encode(tokenizer, context, continuation)
    ids = torch.tensor([context_ids + cont])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    return sum(float(logprobs[len(context_ids) - 1 + j, t]) for j, t in enumerate(cont))


@pytest.mark.parametrize("arch", ["llama", "gpt2", "bloom", "opt"])
def test_batched_loglikelihoods_equal_one_option_at_a_time(arch):
    model, tokenizer = model_of(arch), build_tokenizer()
    spec = eval_set("arc_e")
    reqs = [request(r, options(spec, r, i)) for i, r in enumerate(records())]
    # Continuations that share nothing, or a prefix, and differ in several tokens, of different lengths; and options
    # with contexts of their own and one continuation (WinoGrande's partial scoring).
    reqs += [[("Is it so?", c) for c in (" yes indeed it is", " no", " maybe not")]]
    reqs += [[("Say:", " the cat sat"), ("Say:", " the cat ran off")], [("Tom hid it", " there."), ("Ann", " there.")]]
    expected = [[plain(model, tokenizer, c, o) for c, o in pairs] for pairs in reqs]
    for batch_size in (1, 3, 16):  # alone, and batched with left padding of different lengths
        found = loglikelihoods(model, tokenizer, reqs, {"batch_size": batch_size}, torch.device("cpu"))
        for (values, tokens), want, pairs in zip(found, expected, reqs, strict=True):
            assert values == pytest.approx(want, abs=1e-4)
            assert tokens == [len(encode(tokenizer, c, o)[1]) for c, o in pairs]


def test_virtual_token_adapters_score_whole_sequences_equal_to_one_at_a_time(monkeypatch):
    from llm_adapters.evaluation import likelihood_batches

    model, tokenizer = model_of("llama"), build_tokenizer()
    spec = eval_set("arc_e")
    reqs = [request(r, options(spec, r, i)) for i, r in enumerate(records())]
    monkeypatch.setattr(likelihood_batches, "carries_virtual_tokens", lambda m: True)
    found = loglikelihoods(model, tokenizer, reqs, {"batch_size": 4}, torch.device("cpu"))
    for (values, _), pairs in zip(found, reqs, strict=True):
        assert values == pytest.approx([plain(model, tokenizer, c, o) for c, o in pairs], abs=1e-4)


def test_acc_and_acc_norm_follow_lm_evals_definitions():
    model, tokenizer = model_of("llama"), build_tokenizer()
    spec, recs = eval_set("arc_e"), records()
    metrics, rows = evaluate_set(model, tokenizer, spec, recs, {"batch_size": 4}, {}, torch.device("cpu"))
    for row, record in zip(rows, recs, strict=True):
        best = max(range(len(row["options"])), key=lambda k: row["logprobs"][k])
        normed = max(range(len(row["options"])), key=lambda k: row["logprobs"][k] / row["chars"][k])
        assert row["extracted"] == row["options"][best] and row["extracted_norm"] == row["options"][normed]
        assert row["correct"] == (row["options"][best] == record["answer"]) and row["answer"] == record["answer"]
    assert metrics["n"] == len(recs) and metrics["accuracy"] == pytest.approx(100 * metrics["correct"] / len(recs))
    assert metrics["accuracy_norm"] == pytest.approx(100 * sum(r["correct_norm"] for r in rows) / len(recs))
    assert all(math.isfinite(v) and v < 0 for r in rows for v in r["logprobs"])


def test_the_paper_prompts_continuations_are_what_training_teaches():
    record = records(1)[0]
    (context, first), _ = request(record, options(eval_set("arc_e"), record, 0))
    assert not context.endswith((" ", "\n")) and first.endswith("the correct answer is answer1")
    assert first.strip() == "the correct answer is answer1"  # the commonsense training outputs' wording


def test_every_commonsense_record_beside_the_repo_has_its_options_in_both_styles(shared_data):
    checked = 0
    for name in COMMONSENSE:
        spec = EVAL_SETS[name]
        for split in ("test.json", "train.json"):
            path = shared_data / spec.path.replace("test.json", split)
            if not path.is_file():
                continue
            for index, record in enumerate(json.loads(path.read_text())):
                labels = options(spec, record, index)
                assert record["answer"] in labels and len(labels) >= 2
                assert len(lm_eval_pairs(spec, record, index, labels)) == len(labels)  # lm-eval's format parses too
                checked += 1
    assert checked > 30_000  # the seven test sets and four training sets there


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"instruction": "Which?\n\nAnswer1: a Answer2: b", "answer": "answer1"}, "arc_e record 3: no 'Answer format"),
        ({"instruction": "Which?\n\nAnswer format: answer1", "answer": "answer1"}, r"options \['answer1'\]"),
        ({"instruction": "Which?\n\nAnswer format: answer1/answer2", "answer": "answer3"}, "answer 'answer3'"),
    ],
)
def test_options_that_do_not_parse_name_the_set_and_record(record, message):
    with pytest.raises(DataError, match=message):
        options(eval_set("arc_e"), record, 3)


def test_a_method_that_cannot_score_a_set_is_refused_before_any_weights():
    assert set(METHODS) == {"generate", "loglik"}
    with pytest.raises(ConfigError, match=r"eval.method must be one of generate, loglik \(got 'foo'\)"):
        validate(make_config("eval.method=foo"))
    with pytest.raises(ConfigError, match=r"eval.method=loglik scores commonsense sets: gsm8k cannot be scored"):
        validate(make_config("eval=math", "eval.method=loglik", "eval.datasets=[gsm8k]"))
    validate(make_config("eval=commonsense", "eval.method=loglik", "dataset=arc_e"))
    assert method("loglik").extra({}) == 0


def test_a_job_evaluates_by_likelihood(shared_data, tmp_path):
    from llm_adapters.job.recipe import run
    from tests.helpers.configs import QUICK

    data = [f"paths.data_dir={shared_data}", "dataset=arc_e", "train.max_examples=16", "eval=commonsense"]
    cfg = make_config(*QUICK, *data, "eval.datasets=[arc_e]", "eval.method=loglik", "eval.max_samples=6")
    results = run(cfg, tmp_path)
    assert results["status"] == "ok" and results["axes"]["method"] == "loglik"
    found = results["eval"]["arc_e"]
    assert found["n"] == 6 and 0 <= found["accuracy_norm"] <= 100 and len(found["interval"]) == 2
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"arc_e/{i}" for i in range(6)]
    assert all(len(r["logprobs"]) == len(r["options"]) == len(r["tokens"]) >= 3 for r in rows)


LM_EVAL_CASES = {  # (set, instruction, answer) -> the (context, continuation) pairs lm-eval 0.4's formats give
    "arc_e": (
        "Please choose the correct answer to the question: Which gas do plants take in?\n\nAnswer1: oxygen "
        "Answer2: carbon dioxide\n\nAnswer format: answer1/answer2",
        [
            ("Question: Which gas do plants take in?\nAnswer:", " oxygen"),
            ("Question: Which gas do plants take in?\nAnswer:", " carbon dioxide"),
        ],
    ),
    "obqa": (
        "Please choose the correct answer to the question: Fog is most likely around\n\nAnswer1: a marsh "
        "Answer2: a desert\n\nAnswer format: answer1/answer2",
        [("Fog is most likely around", " a marsh"), ("Fog is most likely around", " a desert")],
    ),
    "siqa": (
        "Please choose the correct answer to the question: Sam left early. Why?\n\nAnswer1: tired "
        "Answer2: bored\n\nAnswer format: answer1/answer2",
        [("Q: Sam left early. Why?\nA:", " tired"), ("Q: Sam left early. Why?\nA:", " bored")],
    ),
    "piqa": (
        "Please choose the correct solution to the question: dresser\n\nSolution1: use a pin \n\nSolution2: "
        "use glue \n\nAnswer format: solution1/solution2",
        [("Question: dresser\nAnswer:", " use a pin"), ("Question: dresser\nAnswer:", " use glue")],
    ),
    "winogrande": (
        "Please choose the correct answer to fill in the blank to complete the given sentence: Sarah beat Maria so "
        "_ won.\n\nOption1: Sarah Option2: Maria Answer format: option1/option2",
        [("Sarah beat Maria so Sarah", " won."), ("Sarah beat Maria so Maria", " won.")],
    ),
    "boolq": (
        "Please answer the following question with true or false, question: is tax the same?\n\nAnswer format: "
        "true/false",
        [("Question: is tax the same?\nAnswer:", " yes"), ("Question: is tax the same?\nAnswer:", " no")],
    ),
}


@pytest.mark.parametrize("name", sorted(LM_EVAL_CASES))
def test_lm_eval_formats(name):
    instruction, expected = LM_EVAL_CASES[name]
    record = {"instruction": instruction, "answer": instruction.rsplit(": ", 1)[1].split("/")[0]}  # the first option
    spec = eval_set(name)
    assert lm_eval_pairs(spec, record, 0, options(spec, record, 0)) == expected


def test_lm_eval_refuses_what_it_cannot_read():
    with pytest.raises(DataError, match="arc_e record 2: its question and options cannot be read"):
        lm_eval_pairs(eval_set("arc_e"), {"instruction": "Which?\n\nAnswer format: answer1/answer2"}, 2, ["a", "b"])
    with pytest.raises(DataError, match=r"gsm8k: eval\.prompt=lm_eval has no format for this set"):
        lm_eval_pairs(eval_set("gsm8k"), {"instruction": "x"}, 0, ["a", "b"])


def test_the_prompt_style_reaches_the_scores():
    """The same questions scored in both styles: the rows carry each style's own context, and the scores differ."""
    model, tokenizer = model_of("llama"), build_tokenizer()
    spec, recs, cpu = eval_set("arc_e"), records(4), torch.device("cpu")
    _, paper = evaluate_set(model, tokenizer, spec, recs, {"batch_size": 4}, {}, cpu)
    _, lm_eval = evaluate_set(model, tokenizer, spec, recs, {"batch_size": 4, "prompt": "lm_eval"}, {}, cpu)
    assert all(r["prompt"].startswith("Question: ") and r["prompt"].endswith("\nAnswer:") for r in lm_eval)
    assert all("### Response:" in r["prompt"] for r in paper)
    assert [r["logprobs"] for r in paper] != [r["logprobs"] for r in lm_eval]
