"""One job end to end in process: the results contract, learning with a frozen base, determinism, failure, W&B."""

import json
import math
import time

import pytest
import torch
from safetensors.torch import load_file

from llm_adapters import adapters
from llm_adapters.adapters import REGISTRY, targets_for
from llm_adapters.data.synthetic_math import generate
from llm_adapters.data.templates import evaluation_prompt, response_text
from llm_adapters.data.training_examples import tokenize_for_training
from llm_adapters.errors import ConfigError
from llm_adapters.evaluation.scoring import extract_number, number_correct
from llm_adapters.job.recipe import run
from llm_adapters.job.report import summary
from llm_adapters.model.loading import load_model, load_tokenizer, model_config
from llm_adapters.training import train
from tests.helpers.configs import FAST, QUICK, build_model, make_config


def test_job_writes_the_results_contract(tmp_path):
    cfg = make_config(*FAST)
    results = run(cfg, tmp_path)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["status"] == "ok" and on_disk["reason"] is None
    for key in (
        "config",
        "model",
        "adapter",
        "placement",
        "dataset",
        "seed",
        "params",
        "train",
        "eval",
        "versions",
        "git_commit",
    ):
        assert key in on_disk, key
    assert on_disk["config"]["adapter"]["r"] == 32 and on_disk["seed"] == 42
    assert on_disk["params"]["trainable"] > 0 and 0 < on_disk["params"]["trainable_pct"] < 100
    assert [s for s, _ in on_disk["train"]["loss_history"]] == [1, 2, 4, 6]  # the first step always
    assert on_disk["train"]["tokens_per_second"] > 0 and on_disk["train"]["peak_memory_mb"] > 0
    assert on_disk["versions"]["torch"] == torch.__version__

    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    _, test_records = generate(cfg.dataset.train_size, cfg.dataset.test_size, cfg.dataset.seed)
    assert len(rows) == len(test_records) == 8
    for row, record in zip(rows, test_records, strict=True):
        assert row["prompt"] == evaluation_prompt(record["instruction"])
        assert row["answer"] == record["answer"]
        assert row["extracted"] == extract_number(response_text(row["generation"]))
        assert row["correct"] == number_correct(row["extracted"], row["answer"])
    accuracy = on_disk["eval"]["synthetic_math"]
    assert accuracy["n"] == 8 and accuracy["accuracy"] == pytest.approx(100 * sum(r["correct"] for r in rows) / 8)

    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert sum(w.numel() for w in weights.values()) == on_disk["params"]["trainable"]
    assert "trainable params" in summary(results, tmp_path)


def test_training_learns_with_the_base_bit_identical():
    cfg = make_config("dataset.train_size=256", "train.max_steps=60", "train.log_every=10", "train.warmup_steps=5")
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, model_config(cfg.model, tokenizer))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    adapters.inject(model, cfg.adapter, targets_for(model.config, {"kind": cfg.adapter.kind}, cfg.placement))
    start = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    records, _ = generate(256, 0, seed=0)
    examples = tokenize_for_training(records, tokenizer, cfg.train.cutoff_len, cfg.train.train_on_inputs)
    fit = train(model, examples, cfg.train, tokenizer.pad_token_id, seed=0, device=torch.device("cpu"))

    losses = [loss for _, loss in fit.loss_history]
    assert losses[-1] < 0.7 * losses[0], losses
    frozen = {name.replace(".base_layer", ""): p for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen.keys() == before.keys()
    assert all(torch.equal(frozen[name], before[name]) for name in before)
    trained = dict(model.named_parameters())
    assert all(not torch.equal(trained[name], value) for name, value in start.items())
    assert all(".lora_" in name for name in start)


def test_train_on_inputs_false_masks_the_prompt():
    tokenizer = load_tokenizer(make_config().model)
    record = generate(1, 0, seed=0)[0][0]
    full = tokenize_for_training([record], tokenizer, 256, train_on_inputs=True)[0]
    masked = tokenize_for_training([record], tokenizer, 256, train_on_inputs=False)[0]
    assert full["input_ids"] == masked["input_ids"] == full["labels"]
    assert full["input_ids"][-1] == tokenizer.eos_token_id
    n_masked = masked["labels"].count(-100)
    assert 0 < n_masked < len(masked["labels"])
    response = tokenizer.decode(masked["input_ids"][n_masked:], skip_special_tokens=True)
    assert response.endswith("The answer is " + record["answer"] + ".")


def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    first = run(make_config(*FAST), tmp_path / "a")
    again = run(make_config(*FAST), tmp_path / "b")
    other = run(make_config(*FAST, "seed=7"), tmp_path / "c")
    assert first["train"]["loss_history"] == again["train"]["loss_history"]
    assert first["eval"]["synthetic_math"]["accuracy"] == again["eval"]["synthetic_math"]["accuracy"]
    assert (tmp_path / "a" / "predictions.jsonl").read_text() == (tmp_path / "b" / "predictions.jsonl").read_text()
    a = load_file(tmp_path / "a" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter" / "adapter_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert first["train"]["loss_history"] != other["train"]["loss_history"]


def test_wandb_offline_run_lives_in_the_job_dir(tmp_path):
    run(make_config(*FAST, "logger=wandb"), tmp_path, group="sweep-x")
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    (record_file,) = run_dir.glob("run-*.wandb")
    data = record_file.read_bytes()
    for _ in range(40):  # the W&B service may still be writing the file just after finish() returns
        if b"train/loss" in data:
            break
        time.sleep(0.5)
        data = record_file.read_bytes()
    for expected in (
        b"train/loss",
        b"train/lr",
        b"eval/synthetic_math/accuracy",
        b"params/trainable",
        b"adapter:lora",
        b"placement:best",
        b"model:tiny-llama",
        b"dataset:synthetic_math",
        b"sweep-x",
    ):
        assert expected in data, expected
    assert "got exitcode: 0" in (run_dir / "logs" / "debug.log").read_text()
    (table,) = run_dir.glob("files/media/table/predictions_*.table.json")  # the sample predictions
    assert len(json.loads(table.read_text())["data"]) == 8


def test_failed_job_records_the_reason_and_closes_its_run(tmp_path):
    with pytest.raises(ConfigError):  # a layer the model lacks: the user's mistake, failed even in a sweep
        run(make_config(*FAST, "logger=wandb", "placement.layers=[99]"), tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "failed"
    assert "placement.layers [99] out of range" in results["reason"]
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    assert "got exitcode: 1" in (run_dir / "logs" / "debug.log").read_text()


def test_local_pretrained_directory_loads_through_the_hub_path(tmp_path):
    """The real loading code (from_pretrained on a path) on a tiny model saved to disk, evaluated zero-shot-free."""
    cfg = make_config()
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, model_config(cfg.model, tokenizer))
    model.save_pretrained(tmp_path / "weights")
    tokenizer.save_pretrained(tmp_path / "weights")
    results = run(
        make_config(*FAST, f"model.name_or_path={tmp_path / 'weights'}", "model.tokenizer=null"), tmp_path / "job"
    )
    built = run(make_config(*FAST), tmp_path / "built")
    assert results["params"] == built["params"]
    assert results["train"]["loss_history"] == built["train"]["loss_history"]


def test_job_on_the_paper_files_reports_contamination(shared_data, tmp_path):
    cfg = make_config(
        *QUICK,
        f"paths.data_dir={shared_data}",
        "dataset=math_data",
        "eval.datasets=[aqua,gsm8k,boolq]",
        "eval.max_samples=3",
    )
    results = run(cfg, tmp_path)
    assert results["protocol"]["name"] == "paper" and results["protocol"]["choice_extraction"] == "first_capital"
    assert results["train"]["examples"] == 3260
    assert {name: m["n"] for name, m in results["eval"].items()} == {"aqua": 3, "gsm8k": 3, "boolq": 3}
    assert results["contamination"]["aqua"] == {"overlap": 203, "n": 254, "percent": 100 * 203 / 254}
    assert results["contamination"]["gsm8k"]["overlap"] == 1055 and results["contamination"]["boolq"]["overlap"] == 0
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == [f"{s}/{i}" for s in ("aqua", "gsm8k", "boolq") for i in range(3)]


def test_bad_data_dir_fails_before_the_model_loads(tmp_path):
    with pytest.raises(ValueError, match=r"data_dir .*nowhere is not a directory"):
        run(make_config(*FAST, f"paths.data_dir={tmp_path / 'nowhere'}", "eval.datasets=[gsm8k]"), tmp_path / "job")
    results = json.loads((tmp_path / "job" / "results.json").read_text())
    assert results["status"] == "failed" and "params" not in results


def test_zero_shot_base_model_on_real_test_files(shared_data, tmp_path):
    """adapter=none evaluates the frozen base model through the same path: no training, no adapter saved."""
    cfg = make_config(
        *FAST, "adapter=none", f"paths.data_dir={shared_data}", "eval.datasets=[addsub,aqua,piqa]", "eval.max_samples=4"
    )
    results = run(cfg, tmp_path)
    assert results["params"]["trainable"] == 0 and results["placement"] is None
    assert results["train"]["steps"] == 0 and results["train"]["loss_history"] == []
    assert {name: m["n"] for name, m in results["eval"].items()} == {"addsub": 4, "aqua": 4, "piqa": 4}
    assert not (tmp_path / "adapter").exists()
    assert "zero-shot" in summary(results, tmp_path)


def test_full_fine_tuning_trains_every_parameter(tmp_path):
    results = run(make_config(*FAST, "adapter=full"), tmp_path)
    assert results["params"]["trainable"] == results["params"]["total"]
    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert sum(w.numel() for w in weights.values()) == results["params"]["total"]


def test_gradient_checkpointing_changes_memory_not_results(tmp_path):
    plain = run(make_config(*FAST), tmp_path / "plain")
    checkpointed = run(make_config(*FAST, "train.gradient_checkpointing=true"), tmp_path / "checkpointed")
    for (_, a), (_, b) in zip(plain["train"]["loss_history"], checkpointed["train"]["loss_history"], strict=True):
        assert abs(a - b) < 1e-5
    a = load_file(tmp_path / "plain" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "checkpointed" / "adapter" / "adapter_model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_bfloat16_base_with_float32_adapter(tmp_path):
    """model.dtype=bfloat16: the frozen base in bf16, the adapter and its optimizer in fp32, training still works."""
    cfg = make_config(*FAST, "model.dtype=bfloat16")
    model, *_ = build_model(cfg)
    dtypes = {(p.requires_grad, p.dtype) for p in model.parameters()}
    assert dtypes == {(False, torch.bfloat16), (True, torch.float32)}
    results = run(cfg, tmp_path)
    assert results["status"] == "ok" and all(math.isfinite(loss) for _, loss in results["train"]["loss_history"])


@pytest.mark.parametrize("adapter", ["lora", "series", "parallel", "prefix", "prompt", "ia3", "scaled_parallel", "mam"])
def test_saved_adapter_evaluates_to_the_same_predictions(tmp_path, adapter):
    """mode=eval adapter_path=DIR rebuilds the trained structure from the saved config and weights."""
    quiet = ["protocol.eval_adapter_dropout=false"]  # generation must not draw random dropout masks here
    placement = {"prefix": "attn", "mam": "best"}.get(adapter, "both")
    trained = run(make_config(*FAST, *quiet, f"adapter={adapter}", f"placement={placement}"), tmp_path / "train")
    evaluated = run(
        make_config(*FAST, *quiet, "mode=eval", f"adapter_path={tmp_path / 'train' / 'adapter'}"), tmp_path / "eval"
    )
    assert evaluated["adapter"] == adapter and evaluated["mode"] == "eval" and evaluated["train"]["steps"] == 0
    presets = REGISTRY[adapter].presets  # placed where it was trained, whatever the command line says
    evaluated_at, trained_at = (presets.get(job["axes"].pop("placement")) for job in (evaluated, trained))
    assert evaluated_at == trained_at and evaluated["axes"] == trained["axes"]
    saved = json.loads((tmp_path / "train" / "adapter" / "adapter_config.json").read_text())
    assert saved["trained_on"] == {"dataset": "synthetic_math", "placement": placement}  # the config's names
    if adapter == "lora":  # an adapter trained on another set: its evaluation is recorded at the axes it was trained at
        saved["trained_on"]["dataset"] = "commonsense_mix"
        (tmp_path / "train" / "adapter" / "adapter_config.json").write_text(json.dumps(saved))
        again = run(
            make_config(*FAST, *quiet, "mode=eval", f"adapter_path={tmp_path / 'train' / 'adapter'}"), tmp_path / "e2"
        )
        assert again["axes"]["dataset"] == "commonsense_mix" and again["axes"]["placement"] == "both"
    assert evaluated["params"] == trained["params"]
    assert evaluated["eval"]["synthetic_math"]["accuracy"] == trained["eval"]["synthetic_math"]["accuracy"]
    read = [json.loads(line)["generation"] for line in (tmp_path / "train" / "predictions.jsonl").open()]
    again = [json.loads(line)["generation"] for line in (tmp_path / "eval" / "predictions.jsonl").open()]
    assert read == again


def test_adapter_path_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match=r"adapter_path .*nowhere: no saved adapter"):
        run(make_config(*FAST, "mode=eval", f"adapter_path={tmp_path / 'nowhere'}"), tmp_path / "a")
    run(make_config(*FAST), tmp_path / "train")
    config = tmp_path / "train" / "adapter" / "adapter_config.json"
    config.write_text(config.read_text().replace('"model_type": "llama"', '"model_type": "gptj"'))
    with pytest.raises(ValueError, match="holds an adapter for model type 'gptj', not this model's 'llama'"):
        run(make_config(*FAST, "mode=eval", f"adapter_path={tmp_path / 'train' / 'adapter'}"), tmp_path / "b")
    with pytest.raises(ValueError, match="mode=eval needs adapter_path=DIR"):
        run(make_config(*FAST, "mode=eval"), tmp_path / "c")
    config.write_text(config.read_text().replace('"model_type": "gptj"', '"model_type": "llama"'))
    deeper = run(make_config(*FAST, "model.config.num_hidden_layers=6"), tmp_path / "deeper")  # the tiny model has 4
    with pytest.raises(ValueError, match=r"adapts layer\(s\) \[4, 5\], but this model has 4 layers"):
        run(make_config(*FAST, "mode=eval", f"adapter_path={tmp_path / 'deeper' / 'adapter'}"), tmp_path / "d")
    assert deeper["status"] == "ok"


def test_a_damaged_saved_adapter_is_refused_before_the_base_model_loads(tmp_path, monkeypatch):
    from llm_adapters.errors import AdapterFileError
    from llm_adapters.job import phases

    run(make_config(*FAST), tmp_path / "train")
    adapter = tmp_path / "train" / "adapter"
    monkeypatch.setattr(phases, "load_model", lambda *a: pytest.fail("the base model was loaded"))
    weights = adapter / "adapter_model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:40])  # truncated
    with pytest.raises(AdapterFileError, match=r"adapter_path .*adapter: cannot be read \(SafetensorError"):
        run(make_config(*FAST, "mode=eval", f"adapter_path={adapter}"), tmp_path / "d")
    weights.write_bytes(good)
    (adapter / "adapter_config.json").write_text("{not json")
    with pytest.raises(AdapterFileError, match=r"cannot be read \(JSONDecodeError"):
        run(make_config(*FAST, "mode=eval", f"adapter_path={adapter}"), tmp_path / "e")


def test_group_by_length_pads_less_and_keeps_the_epoch():
    from llm_adapters.data.training_examples import grouped_by_length

    lengths = [((i * 37) % 97) + 5 for i in range(400)]
    order = torch.randperm(400, generator=torch.Generator().manual_seed(0)).tolist()
    grouped = grouped_by_length(order, lengths, batch_size=8, megabatches=10)
    assert sorted(grouped) == list(range(400))  # the same examples, each once

    def padding(o: list[int]) -> int:
        return sum(
            max(lengths[i] for i in o[s : s + 8]) * 8 - sum(lengths[i] for i in o[s : s + 8]) for s in range(0, 400, 8)
        )

    assert padding(grouped) < padding(order) / 3
