"""The training loop: AdamW, linear warm-up and decay, gradient accumulation, clipping — the HF Trainer settings
the paper's finetune.py ran with, written out as one plain function so the whole path reads top to bottom."""

from __future__ import annotations

import logging
import math
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from llm_adapters.data import collate

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run reports into results.json."""

    steps: int
    seconds: float
    tokens: int
    loss_history: list[list[float]] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated on CUDA; elsewhere the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def optimizer_steps(n_examples: int, cfg: Mapping) -> int:
    """Optimizer steps the run will take: ceil(examples / batch) per epoch, capped by ``max_steps``."""
    steps = math.ceil(n_examples / int(cfg["batch_size"])) * int(cfg["epochs"])
    return min(steps, int(cfg["max_steps"])) if cfg["max_steps"] else steps


def train(
    model: torch.nn.Module,
    examples: Sequence[Mapping[str, list[int]]],
    cfg: Mapping,
    pad_id: int,
    seed: int,
    device: torch.device,
    on_log: Callable[[dict[str, float], int], None] = lambda metrics, step: None,
) -> TrainResult:
    """Fine-tune the trainable parameters of ``model`` on tokenized examples; the base stays frozen."""
    batch_size, micro = int(cfg["batch_size"]), int(cfg["micro_batch_size"])
    total_steps = optimizer_steps(len(examples), cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg["warmup_steps"]), total_steps)
    order_rng = torch.Generator().manual_seed(seed)
    model.train()
    model.config.use_cache = False

    result = TrainResult(steps=0, seconds=0.0, tokens=0)
    window: list[float] = []
    start = time.perf_counter()
    progress = tqdm(total=total_steps, desc="train", unit="step", dynamic_ncols=True)
    while result.steps < total_steps:
        order = torch.randperm(len(examples), generator=order_rng).tolist()
        for first in range(0, len(order), batch_size):
            step_ids = order[first : first + batch_size]
            micro_batches = [step_ids[i : i + micro] for i in range(0, len(step_ids), micro)]
            step_loss = 0.0
            for ids in micro_batches:
                batch = {k: v.to(device) for k, v in collate([examples[i] for i in ids], pad_id).items()}
                loss = model(**batch).loss / len(micro_batches)
                loss.backward()
                step_loss += loss.item()
                result.tokens += int(batch["attention_mask"].sum())  # non-padding tokens processed
            if not math.isfinite(step_loss):
                raise FloatingPointError(f"non-finite training loss {step_loss} at step {result.steps + 1}")
            if cfg["max_grad_norm"]:
                torch.nn.utils.clip_grad_norm_(params, float(cfg["max_grad_norm"]))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            result.steps += 1
            window.append(step_loss)
            progress.update()
            if result.steps % int(cfg["log_every"]) == 0 or result.steps == total_steps:
                mean_loss = sum(window) / len(window)
                result.loss_history.append([result.steps, mean_loss])
                lr = scheduler.get_last_lr()[0]
                progress.set_postfix(loss=f"{mean_loss:.3f}")
                on_log({"train/loss": mean_loss, "train/lr": lr}, result.steps)
                log.info("step %d/%d loss %.4f lr %.2e", result.steps, total_steps, mean_loss, lr)
                window.clear()
            if result.steps == total_steps:
                break
    progress.close()
    result.seconds = time.perf_counter() - start
    return result
