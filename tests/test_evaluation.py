"""Generation: batched equals one at a time; the protocol's switches do what they name."""

import copy

import pytest
import torch

from llm_adapters.adapters import set_adapter_dropout
from llm_adapters.data.sets import EVAL_SETS
from llm_adapters.data.synthetic_math import generate as synthetic
from llm_adapters.data.templates import evaluation_prompt
from llm_adapters.evaluation.generation import evaluate_set, generate
from tests.helpers.configs import build_model, make_config
from tests.helpers.models import families

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer, *_ = build_model(make_config())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)  # a non-trivial adapter
    return model.eval(), tokenizer


# Prompts of different lengths, so batches are padded.
RECORDS = synthetic(12, 0, seed=5)[0]
PROMPTS = [evaluation_prompt(r["instruction"]) for r in RECORDS]


@pytest.mark.parametrize("num_beams", [1, 4])
def test_batched_generation_equals_one_at_a_time(tiny, num_beams):
    model, tokenizer = tiny
    set_adapter_dropout(model, active=False)
    tokenizer.padding_side = "right"  # generate pads on the left whatever the tokenizer says
    one = generate(model, tokenizer, PROMPTS, {"batch_size": 1, "num_beams": num_beams, "max_new_tokens": 12}, CPU)
    many = generate(model, tokenizer, PROMPTS, {"batch_size": 6, "num_beams": num_beams, "max_new_tokens": 12}, CPU)
    assert len({len(tokenizer(p)["input_ids"]) for p in PROMPTS}) > 1
    assert one == many


def test_adapter_dropout_switch(tiny):
    model, _ = tiny
    dropouts = [m.lora_dropout for m in model.modules() if hasattr(m, "lora_dropout")]
    set_adapter_dropout(model, active=True)
    assert all(d.training for d in dropouts) and not model.training
    set_adapter_dropout(model, active=False)
    assert not any(d.training for d in dropouts)


def test_protocols_set_their_switches():
    paper, fixed = make_config().protocol, make_config("protocol=fixed").protocol
    assert (paper.choice_extraction, paper.eval_adapter_dropout, paper.commonsense_attention_mask) == (
        "first_capital",
        True,
        False,
    )
    assert (fixed.choice_extraction, fixed.eval_adapter_dropout, fixed.commonsense_attention_mask) == (
        "option",
        False,
        True,
    )
    assert make_config().train.train_on_inputs is True
    assert make_config("protocol=fixed").train.train_on_inputs is False
    assert make_config("protocol=fixed", "train.train_on_inputs=true").train.train_on_inputs is True


def test_commonsense_without_mask_attends_to_padding(tiny):
    """protocol=paper generates commonsense batches with the padding attended: outputs of padded prompts change."""
    model, tokenizer = tiny
    records = [{**r, "answer": "true"} for r in RECORDS]
    cfg = {"batch_size": 12, "num_beams": 1, "max_new_tokens": 8}
    runs = {}
    for name in ("paper", "fixed"):
        protocol = copy.deepcopy(make_config(f"protocol={name}").protocol)
        protocol.eval_adapter_dropout = False
        _, rows = evaluate_set(model, tokenizer, EVAL_SETS["boolq"], records, cfg, protocol, CPU)
        runs[name] = [row["generation"] for row in rows]
    one = generate(model, tokenizer, PROMPTS, {**cfg, "batch_size": 1}, CPU)
    assert runs["fixed"] == one
    assert runs["paper"] != one


def test_merged_lora_gives_the_same_logits_and_predictions(tmp_path):
    from llm_adapters.job.recipe import run
    from tests.helpers.configs import FAST

    quiet = [*FAST, "protocol.eval_adapter_dropout=false"]
    plain = run(make_config(*quiet), tmp_path / "plain")
    merged = run(make_config(*quiet, "eval.merge_adapters=true"), tmp_path / "merged")
    assert (tmp_path / "plain" / "predictions.jsonl").read_text() == (
        tmp_path / "merged" / "predictions.jsonl"
    ).read_text()
    assert plain["eval"] == {k: {**v, "seconds": plain["eval"][k]["seconds"]} for k, v in merged["eval"].items()}

    model, *_ = build_model(make_config("adapter.dropout=0"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    ids = torch.randint(3, 500, (2, 10))
    before = model.eval()(ids).logits
    from llm_adapters.adapters import merge_adapters

    assert merge_adapters(model) == 20
    torch.testing.assert_close(model(ids).logits, before, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model_type", [*families(), "mistral-window"])
def test_beam_search_with_the_prompt_prefilled_once_equals_plain_generate(model_type):
    """Our beam search hands generate the prompt cache of one pass per prompt, held per beam; transformers
    processes the prompt once per beam. Same tokens, left padding included; a sliding window (Mistral with a window
    shorter than the prompt) keeps its own cache layers, per layer where a family mixes them (Gemma 3)."""
    from transformers import DynamicCache

    from llm_adapters.evaluation.generation import prefill_once
    from tests.helpers.models import tiny_model

    if model_type == "mistral-window":
        from transformers import AutoConfig, AutoModelForCausalLM

        from tests.helpers.models import TINY_CONFIGS

        config = AutoConfig.for_model("mistral", vocab_size=101, sliding_window=6, **TINY_CONFIGS["mistral"])
        model = AutoModelForCausalLM.from_config(config).eval()
    else:
        model = tiny_model(model_type)
    model.generation_config.pad_token_id = 0
    ids = torch.randint(3, 100, (3, 12))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    mask[1, :1] = 0
    batch = {"input_ids": ids, "attention_mask": mask}
    settings = {"do_sample": False, "num_beams": 4, "max_new_tokens": 10}
    with torch.inference_mode():  # as evaluation.generate runs
        plain = model.generate(**batch, **settings)
        extra = prefill_once(model, batch, 4, new_tokens=3)  # less room than it needs: the buffer must grow
        assert extra, "the prompt cache was not prefilled"
        kinds = [type(layer).__name__ for layer in next(iter(extra.values())).layers]
        own = [type(layer).__name__ for layer in DynamicCache(config=model.config).layers]  # transformers' choice
        assert kinds == [kind.replace("DynamicLayer", "SharedPromptLayer") for kind in own]
        assert torch.equal(model.generate(**batch, **extra, **settings), plain)


def test_beam_cache_holds_and_reorders_what_transformers_cache_does():
    from transformers.cache_utils import DynamicLayer

    from llm_adapters.evaluation.beam_cache import SharedPromptLayer

    torch.manual_seed(0)
    keys, values = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)  # 2 prompts, 3 heads, 5 positions
    ours = SharedPromptLayer(keys, values, beams=2, room=1)
    reference = DynamicLayer()
    reference.update(keys.repeat_interleave(2, dim=0), values.repeat_interleave(2, dim=0))
    # within each prompt's beams (the prompt part is left alone), then across prompts (the fallback gathers all)
    for order in ([1, 1, 2, 3], [0, 1, 3, 3], [3, 0, 2, 1], [1, 1, 2, 2]):
        new_keys, new_values = torch.randn(4, 3, 1, 4), torch.randn(4, 3, 1, 4)  # one more token: the buffer grows
        for layer in (ours, reference):
            layer.update(new_keys, new_values)
            layer.reorder_cache(torch.tensor(order))
        assert ours.get_seq_length() == reference.get_seq_length()
        assert torch.equal(ours.keys, reference.keys) and torch.equal(ours.values, reference.values)


def test_paper_protocol_batches_commonsense_in_file_order_as_its_script_did(tiny):
    """commonsense_evaluate.py took consecutive records, padded them on the left with id 0 and generated from the
    input ids alone: with the padding attended, which prompts share a batch decides the outputs. protocol=paper gives
    exactly that script's generations; sorting by length (protocol=fixed's batching) gives others."""
    model, tokenizer = tiny
    protocol = copy.deepcopy(make_config().protocol)
    protocol.eval_adapter_dropout = False
    assert protocol.commonsense_file_order and protocol.pad_token_id == tokenizer.pad_token_id == 0
    cfg = {"batch_size": 4, "num_beams": 4, "max_new_tokens": 8}
    records = [{**r, "answer": "true"} for r in RECORDS]
    _, rows = evaluate_set(model, tokenizer, EVAL_SETS["boolq"], records, cfg, protocol, CPU)
    reference = []
    for first in range(0, len(PROMPTS), 4):
        ids = tokenizer.pad(
            {"input_ids": [tokenizer(p)["input_ids"] for p in PROMPTS[first : first + 4]]},
            padding_side="left",
            return_tensors="pt",
        )["input_ids"]
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),  # what generate assumed without a mask or a pad id
                num_beams=4,
                do_sample=False,
                max_new_tokens=8,
                pad_token_id=0,
                eos_token_id=tokenizer.eos_token_id,
            )
        reference += tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
    assert [row["generation"] for row in rows] == reference
    protocol.commonsense_file_order = False
    _, sorted_rows = evaluate_set(model, tokenizer, EVAL_SETS["boolq"], records, cfg, protocol, CPU)
    assert [row["generation"] for row in sorted_rows] != reference
