"""Training step time: our LoRA against PEFT's (same targets, rank, alpha, dropout), every adapter against the floor
(the frozen base's forward and backward with no adapter), and full fine-tuning against the same floor.

    python -m benchmarks.train_throughput [--model HUB_ID_OR_PATH] [--device cuda] [--repeats 5]
"""

from __future__ import annotations

import copy
import json

import peft
import torch

from benchmarks.common import adapter_config, arguments, base_model, median_seconds, with_adapter

BATCH, LENGTH = 4, 128


def train_step(model: torch.nn.Module, ids: torch.Tensor):
    """One optimizer step over the trainable parameters (AdamW, as the jobs train)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def step() -> None:
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def floor_step(model: torch.nn.Module, ids: torch.Tensor):
    """Forward and backward through the frozen base, the least any adapter must pay: gradients flow back from the
    loss through every layer to the input embeddings."""
    model.requires_grad_(False).train()

    def step() -> None:
        embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
        model(inputs_embeds=embeds, labels=ids).loss.backward()

    return step


def main() -> None:
    args = arguments(__doc__.split("\n\n")[0])
    base = base_model(args.model, args.device)
    ids = torch.randint(3, base.config.vocab_size, (BATCH, LENGTH), device=args.device)
    time = {"floor": median_seconds(floor_step(copy.deepcopy(base), ids), args.repeats)}
    for kind in ("series", "parallel", "lora", "prefix"):
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

    figures = {
        "lora_vs_peft": time["lora"] / time["peft_lora"],
        **{f"{kind}_vs_floor": time[kind] / time["floor"] for kind in ("series", "parallel", "lora", "prefix", "full")},
        "seconds": time,
        "model_parameters": sum(p.numel() for p in base.parameters()),
        "batch": [BATCH, LENGTH],
        "device": args.device,
    }
    for name, value in figures.items():
        if name.endswith(("_vs_peft", "_vs_floor")):
            print(f"{name:>20}  {value:.3f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
