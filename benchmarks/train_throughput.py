"""Training step time: our LoRA against PEFT's (same targets, rank, alpha, dropout), every adapter against the floor
(the frozen base's forward and backward with no adapter), and full fine-tuning against the same floor; and useful
(non-padding) training tokens per second of our loop with length-grouped batches against the paper's setup
(shuffled batches padded to the longest, to a multiple of 8) on the real lengths of math_data.json; and the
paper's kinds on a bf16 base against the fp32 base (``<kind>_bf16_vs_fp32``: job-like steps, adapters fp32).

    python -m benchmarks.train_throughput [--model smollm2-135m|HUB_ID_OR_PATH] [--device cuda] [--repeats 5]
                                          [--hidden 512] [--layers 8] [--step-only] [--kinds vera,hra,...]
"""

from __future__ import annotations

import copy
import json

import peft
import torch
from tqdm import tqdm

from benchmarks.common import (
    SHARED,
    adapter_config,
    base_model,
    job_config,
    machine,
    median_seconds,
    parser,
    tokenizer_for,
    with_adapter,
)
from llm_adapters.adapters import adapter_kinds
from llm_adapters.data.sets import load_records
from llm_adapters.data.synthetic_math import generate as synthetic
from llm_adapters.data.training_examples import IGNORE_INDEX, tokenize_for_training
from llm_adapters.model.loading import contiguous_head_input
from llm_adapters.training import causal_lm_loss, train

BATCH, LENGTH = 4, 128
# The paper's four first, then the rest of the registered family.
PAPER = ("series", "parallel", "lora", "prefix")
KINDS = (*PAPER, *(kind for kind in adapter_kinds() if kind not in PAPER))
BF16_KINDS = ("lora", "series", "parallel")


def train_step(model: torch.nn.Module, ids: torch.Tensor):
    """One optimizer step over the trainable parameters (AdamW, as the jobs train)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def step() -> None:
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def job_step(model: torch.nn.Module, ids: torch.Tensor, response: int = 16):
    """One optimizer step as a job takes it: the loss on the last ``response`` tokens only (the prompt masked), the
    output layer applied from the first of them on (``training.causal_lm_loss``)."""
    labels = ids.clone()
    labels[:, :-response] = IGNORE_INDEX
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def step() -> None:
        causal_lm_loss(model, batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def bf16_vs_fp32(base: torch.nn.Module, ids: torch.Tensor, repeats: int) -> dict[str, float]:
    """Each of the paper's kinds trained on the fp32 base and on the same base in bf16 (the adapters and the
    optimizer fp32 in both), job-like steps: the fp32 step's time over the bf16 step's."""
    half = copy.deepcopy(base).to(torch.bfloat16)
    contiguous_head_input(half)  # as load_model does for a half-precision base
    ratios = {}
    for kind in tqdm(BF16_KINDS, desc="fp32 vs bf16 base"):
        fp32 = median_seconds(job_step(with_adapter(copy.deepcopy(base), kind), ids), repeats)
        bf16 = median_seconds(job_step(with_adapter(copy.deepcopy(half), kind), ids), repeats)
        ratios[f"{kind}_bf16_vs_fp32"] = fp32 / bf16
    return ratios


def floor_step(model: torch.nn.Module, ids: torch.Tensor):
    """Forward and backward through the frozen base, the least any adapter must pay: gradients flow back from the
    loss through every layer to the input embeddings."""
    model.requires_grad_(False).train()

    def step() -> None:
        embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
        model(inputs_embeds=embeds, labels=ids).loss.backward()

    return step


def pipeline_tokens_per_second(base: torch.nn.Module, tokenizer, device: str, group_by_length: bool) -> float:
    """One epoch of 320 training examples (math_data.json when ../shared has it, else synthetic) through the job's
    training loop, LoRA on the benchmark model."""
    path = SHARED / "ft-training_set" / "math_data.json"
    records = load_records(path)[:320] if path.is_file() else synthetic(320, 0, seed=0)[0]
    examples = tokenize_for_training(records, tokenizer, cutoff_len=256, train_on_inputs=True)
    cfg = job_config(
        "lora",
        "best",
        *("train=paper", "train.epochs=1", "train.lr=1e-4", "train.warmup_steps=2", "train.log_every=100"),
        *("train.save_every=null", f"train.group_by_length={group_by_length}"),
    ).train
    model = with_adapter(copy.deepcopy(base), "lora")
    return train(model, examples, cfg, tokenizer.pad_token_id, seed=0, device=torch.device(device)).tokens_per_second


def main() -> None:
    options = parser(__doc__.split("\n\n")[0])
    options.add_argument("--step-only", action="store_true", help="step ratios only, no training pipeline")
    options.add_argument("--kinds", help="comma-separated kinds to time (LoRA always, for lora_vs_peft); default all")
    args = options.parse_args()
    kinds = KINDS if not args.kinds else ("lora", *(k for k in args.kinds.split(",") if k != "lora"))
    if unknown := [k for k in kinds if k not in KINDS]:
        options.error(f"--kinds: unknown {', '.join(unknown)} (known: {', '.join(KINDS)})")
    base = base_model(args.model, args.device, hidden=args.hidden, layers=args.layers)
    ids = torch.randint(3, base.config.vocab_size, (BATCH, LENGTH), device=args.device)
    time = {"floor": median_seconds(floor_step(copy.deepcopy(base), ids), args.repeats)}
    for kind in tqdm(kinds, desc="adapters"):
        time[kind] = median_seconds(train_step(with_adapter(copy.deepcopy(base), kind), ids), args.repeats)
    time["full"] = median_seconds(train_step(copy.deepcopy(base).requires_grad_(True), ids), args.repeats)
    lora = adapter_config("lora")
    reference = peft.get_peft_model(
        copy.deepcopy(base),
        peft.LoraConfig(
            r=lora["r"],
            lora_alpha=lora["alpha"],
            lora_dropout=lora["dropout"],
            target_modules=["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"],
        ),
    )
    time["peft_lora"] = median_seconds(train_step(reference, ids), args.repeats)

    figures = {"lora_vs_peft": time["lora"] / time["peft_lora"], **bf16_vs_fp32(base, ids, args.repeats)}
    if not args.step_only:
        tokenizer = tokenizer_for(args.model)
        paper_pipeline = pipeline_tokens_per_second(base, tokenizer, args.device, group_by_length=False)
        grouped_pipeline = pipeline_tokens_per_second(base, tokenizer, args.device, group_by_length=True)
        figures["train_tokens_vs_paper"] = grouped_pipeline / paper_pipeline
        figures["tokens_per_second"] = {"paper_setup": paper_pipeline, "group_by_length": grouped_pipeline}
    figures = {
        **figures,
        **{f"{kind}_vs_floor": time[kind] / time["floor"] for kind in (*kinds, "full")},
        "seconds": time,
        "model_parameters": sum(p.numel() for p in base.parameters()),
        "batch": [BATCH, LENGTH],
        "device": args.device,
        "machine": machine(),
    }
    for name, value in figures.items():
        if name.endswith(("_vs_peft", "_vs_floor", "_vs_paper", "_vs_fp32")):
            print(f"{name:>20}  {value:.3f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
