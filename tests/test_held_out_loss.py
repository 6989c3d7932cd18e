"""The paper's validation split and best checkpoint: finetune.py's split exactly, the kept weights those of the
lowest validation loss, and a resumed run that ends where an uninterrupted one does, best weights included."""

import json
import shutil

import pytest
import torch
from datasets import Dataset

from llm_adapters.data.synthetic_math import generate
from llm_adapters.data.training_examples import Examples, tokenize_for_training
from llm_adapters.job.config import ConfigError, validate
from llm_adapters.job.phases import set_seed
from llm_adapters.model.loading import load_tokenizer
from llm_adapters.training import held_out_loss, train
from tests.helpers.configs import build_model, make_config

CPU = torch.device("cpu")
REAL_LOSS = held_out_loss.loss  # what the loop computes, before a test scripts what it sees
SETTINGS = [  # 24 records to train on, 16 held out, 15 validations
    *("train.val_set_size=16", "train.eval_every=4", "train.log_every=4", "train.batch_size=8"),
    *("train.micro_batch_size=8", "train.max_steps=60", "train.lr=0.1", "train.warmup_steps=0"),
]


def test_the_split_is_finetune_pys():
    records = [{"i": i} for i in range(300)]
    examples = Examples(Dataset.from_list([{"input_ids": [i], "labels": [i], "length": 1} for i in range(300)]))
    kept, held_out = held_out_loss.split(examples, 120)
    reference = Dataset.from_list(records).train_test_split(test_size=120, shuffle=True, seed=42)
    assert [r["input_ids"][0] for r in held_out] == list(reference["test"]["i"])
    assert [r["input_ids"][0] for r in kept] == list(reference["train"]["i"])
    everything, none = held_out_loss.split(examples, 0)
    assert everything is examples and len(none) == 0


def fitted(*overrides, **kwargs):
    cfg = make_config(*SETTINGS, *overrides)
    set_seed(0)  # the same adapter init in every call
    model, tokenizer, *_ = build_model(cfg)
    examples = tokenize_for_training(generate(40, 0, seed=0)[0], load_tokenizer(cfg.model), 64, False)
    fit = train(model, examples, cfg.train, tokenizer.pad_token_id, seed=0, device=CPU, **kwargs)
    _, held_out = held_out_loss.split(examples, 16)
    return fit, model, REAL_LOSS(model, held_out, 8, tokenizer.pad_token_id, CPU, None)


def scripted_validation(monkeypatch, script: dict[int, float]) -> tuple[dict, dict]:
    """Make the loop see the validation loss ``script[step]`` at each evaluated step, whatever the CPU's rounding
    makes of the real one, so a loss that rises again is constructed rather than hoped for. The real loss and a copy
    of the trainable weights at each evaluated step are kept, to check what was put back."""
    weights, true_loss, steps = {}, {}, iter(sorted(script))

    def loss(model, *args):
        step = next(steps)
        weights[step], true_loss[step] = held_out_loss.trainable_copy(model), REAL_LOSS(model, *args)
        return script[step]

    monkeypatch.setattr(held_out_loss, "loss", loss)
    return weights, true_loss


def trainable_equal(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> bool:
    now = held_out_loss.trainable_copy(model)
    return now.keys() == weights.keys() and all(torch.equal(now[name], weights[name]) for name in weights)


# Lowest at steps 20 and 40 (the first of equal losses is kept, as the Trainer does), higher after.
SCRIPT = {step: 1.0 if step in (20, 40) else 2.0 + abs(step - 20) / 10 for step in range(4, 61, 4)}


def test_keep_best_puts_back_the_weights_of_the_lowest_validation_loss(monkeypatch):
    weights, true_loss = scripted_validation(monkeypatch, SCRIPT)
    fit, model, final = fitted("train.keep=best")
    assert fit.val_history == [[step, value] for step, value in SCRIPT.items()] and fit.val_examples == 16
    assert fit.best_step == 20
    assert not trainable_equal(model, weights[60])  # training moved the weights after step 20 ...
    assert trainable_equal(model, weights[20])  # ... and step 20's were put back
    assert final == pytest.approx(true_loss[20], abs=1e-6)


def test_keep_last_leaves_the_last_weights(monkeypatch):
    weights, true_loss = scripted_validation(monkeypatch, SCRIPT)
    fit, model, final = fitted("train.keep=last")
    assert fit.best_step is None and trainable_equal(model, weights[60])
    assert final == pytest.approx(true_loss[60], abs=1e-6)


def test_a_resumed_run_keeps_the_same_best(tmp_path):
    copied = tmp_path / "step-24"

    def copy_when_logged(metrics, step):  # at step 28 the step-24 checkpoint is the newest one
        if step == 28 and not copied.exists():
            shutil.copytree(tmp_path / "checkpoints" / "step-24", copied)

    whole, model, _ = fitted(
        "train.keep=best", "train.save_every=8", checkpoint_dir=tmp_path / "checkpoints", on_log=copy_when_logged
    )
    resumed, again, _ = fitted("train.keep=best", resume_from=copied)
    assert resumed.val_history == whole.val_history and resumed.best_step == whole.best_step
    for (name, mine), theirs in zip(again.named_parameters(), model.parameters(), strict=True):
        assert torch.equal(mine, theirs), name


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.keep=best", "train.keep=best picks by validation loss: set train.val_set_size"),
        ("train.keep=first", "train.keep must be best or last"),
        ("train.val_set_size=-1", "train.val_set_size must not be negative"),
        ("train.eval_every=0", "train.eval_every must be a positive number"),
    ],
)
def test_bad_validation_settings_are_one_line(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(make_config(override))


def test_a_split_that_leaves_nothing_to_train_on_stops_before_the_model_loads(shared_data, tmp_path):
    from llm_adapters.job.recipe import run

    cfg = make_config(
        *("paths.data_dir=" + str(shared_data), "dataset=math_data", "eval=math", "train.max_examples=10"),
        *("train.val_set_size=10", "logger=none", "train.resume=false"),
    )
    with pytest.raises(ConfigError, match=r"train.val_set_size 10 leaves nothing to train on \(10 records in "):
        run(cfg, tmp_path)
    assert "params" not in json.loads((tmp_path / "results.json").read_text())  # no model was built


def test_an_unreadable_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    """Two checkpoints are kept; with the newest truncated, resuming continues from the previous one and still ends
    where the uninterrupted run ended. With none readable, one line says how to start over."""
    from llm_adapters.training.checkpoint import CheckpointError

    _, model, _ = fitted("train.save_every=6", checkpoint_dir=tmp_path / "checkpoints")
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-54", "step-60"]
    (tmp_path / "checkpoints" / "step-60" / "weights.safetensors").write_bytes(b"\x00" * 10)
    resumed, again, _ = fitted("train.save_every=6", resume_from=tmp_path / "checkpoints" / "step-60")
    assert resumed.resumed_from == tmp_path / "checkpoints" / "step-54"
    assert all(torch.equal(a, b) for a, b in zip(again.parameters(), model.parameters(), strict=True))
    (tmp_path / "checkpoints" / "step-54" / "state.pt").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match=r"no usable checkpoint .* rerun with train.resume=false"):
        fitted(resume_from=tmp_path / "checkpoints" / "step-60")
