"""LoRA adapters travel both ways in PEFT's format: ours load with peft.PeftModel.from_pretrained, a PEFT LoRA
checkpoint evaluates here, with the same logits."""

import peft
import torch

from llm_adapters.job.recipe import run
from llm_adapters.model.loading import load_model, load_tokenizer, model_config
from tests.helpers.configs import FAST, build_model, make_config


def base_model():
    cfg = make_config()
    return load_model(cfg.model, model_config(cfg.model, load_tokenizer(cfg.model))).eval()


IDS = torch.randint(3, 500, (2, 12))


def test_our_lora_loads_in_peft(tmp_path):
    run(make_config(*FAST, "adapter.dropout=0.0"), tmp_path)
    ours, *_ = build_model(make_config("mode=eval", f"adapter_path={tmp_path / 'adapter'}"))
    theirs = peft.PeftModel.from_pretrained(base_model(), str(tmp_path / "adapter" / "peft")).eval()
    assert sum(p.abs().sum() for n, p in ours.named_parameters() if "lora_B" in n) > 0  # trained: B moved off zero
    torch.testing.assert_close(ours.eval()(IDS).logits, theirs(IDS).logits, atol=1e-5, rtol=0)


def test_a_peft_lora_checkpoint_imports(tmp_path):
    theirs = peft.get_peft_model(
        base_model(), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"])
    )
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
    theirs.save_pretrained(tmp_path)
    ours, _, adapter, targets = build_model(make_config("mode=eval", f"adapter_path={tmp_path}"))
    assert adapter == {"kind": "lora", "r": 4, "alpha": 8, "dropout": 0.0}
    assert {t.site for t in targets} == {"attn.q", "mlp.down"} and len(targets) == 8
    torch.testing.assert_close(ours.eval()(IDS).logits, theirs.eval()(IDS).logits, atol=1e-5, rtol=0)


def test_gpt2_conv1d_lora_loads_in_peft(tmp_path):
    """GPT-2's projections are transposed Conv1D layers; PEFT knows them by its fan_in_fan_out flag."""
    from llm_adapters.adapters import prepare, saving, targets_for
    from tests.helpers.models import tiny_model

    cfg = make_config("placement=both", "adapter.dropout=0.0")
    ours = tiny_model("gpt2")
    targets = targets_for(ours.config, dict(cfg.adapter), cfg.placement)
    prepare(ours, dict(cfg.adapter), targets)
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
    saving.save(ours, dict(cfg.adapter), "tiny-gpt2", targets, tmp_path)
    theirs = peft.PeftModel.from_pretrained(tiny_model("gpt2"), str(tmp_path / "peft")).eval()
    ids = torch.randint(3, 100, (2, 12))
    torch.testing.assert_close(ours.eval()(ids).logits, theirs(ids).logits, atol=1e-5, rtol=0)


def test_a_peft_checkpoint_no_kind_reads_is_one_line_naming_what_can_be(tmp_path):
    """The import is the LoRA kind's (its record's ``peft_read``): a PEFT IA3 checkpoint, or a DoRA one saved as
    LORA with ``use_dora``, is refused before the base model loads."""
    import pytest

    from llm_adapters.adapters import saving
    from llm_adapters.errors import AdapterFileError

    base = base_model()
    ia3 = peft.get_peft_model(
        base, peft.IA3Config(target_modules=["k_proj", "down_proj"], feedforward_modules=["down_proj"])
    )
    ia3.save_pretrained(tmp_path / "ia3")
    with pytest.raises(AdapterFileError, match=r"ia3: a PEFT IA3 checkpoint cannot be imported \(only LORA\)$"):
        saving.read_config(tmp_path / "ia3", base.config)
    dora = peft.get_peft_model(base_model(), peft.LoraConfig(r=2, target_modules=["q_proj"], use_dora=True))
    dora.save_pretrained(tmp_path / "dora")
    with pytest.raises(AdapterFileError, match=r"dora: only plain PEFT LoRA can be imported \(\['use_dora'\]\)$"):
        saving.read_config(tmp_path / "dora", base.config)
