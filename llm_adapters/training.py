"""The training loop: AdamW, linear warm-up and decay, gradient accumulation, clipping — the HF Trainer settings
the paper's finetune.py ran with, written out as one plain function so the whole path reads top to bottom."""

from __future__ import annotations

import logging
import math
import resource
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from llm_adapters import checkpoint
from llm_adapters.checkpoint import Preempted
from llm_adapters.distributed import Distributed
from llm_adapters.examples import IGNORE_INDEX, collate
from llm_adapters.models import autocast

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
    """Optimizer steps the run will take: ``max_steps`` when set (as the HF Trainer's, it overrides ``epochs``:
    the data is gone through as many times as it takes), else ceil(examples / batch) per epoch."""
    if cfg["max_steps"]:
        return int(cfg["max_steps"])
    return math.ceil(n_examples / int(cfg["batch_size"])) * int(cfg["epochs"])


def grouped_by_length(order: list[int], lengths: list[int], batch_size: int, megabatches: int = 50) -> list[int]:
    """A shuffled order rearranged so each batch holds examples of similar length (less padding): the shuffled
    order is cut into runs of ``megabatches`` batches and each run sorted by length, longest first — the HF
    Trainer's ``group_by_length``. Which examples share an epoch is unchanged, only their grouping."""
    size = batch_size * megabatches
    return [
        i
        for start in range(0, len(order), size)
        for i in sorted(order[start : start + size], key=lambda i: -lengths[i])
    ]


def gradient_scaler(device: torch.device, precision: str | None) -> torch.amp.GradScaler:
    """Loss scaling for float16 mixed precision, as the paper's ``fp16=True`` Trainer did (float16 gradients of a
    small loss underflow to zero without it); a disabled scaler, which changes nothing, otherwise. Where the device
    has no float16 scaler, one warning and float16 runs unscaled."""
    if precision != "float16":
        return torch.amp.GradScaler(device.type, enabled=False)
    try:
        return torch.amp.GradScaler(device.type)
    except (RuntimeError, ValueError) as error:
        log.warning("train.autocast=float16 without loss scaling: %s has no gradient scaler (%s)", device, error)
        return torch.amp.GradScaler(device.type, enabled=False)


def linear_warmup_decay(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 over ``warmup`` steps, then linear decay to 0 at ``total``: the HF Trainer's default
    schedule (tested equal to transformers' get_linear_schedule_with_warmup). Written here because importing that
    module also imports PEFT when it is installed, nearly 2 s of every command's start."""

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def causal_lm_loss(forward: Callable[..., Any], batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The mean next-token loss over the labelled tokens, as the model's own ``labels=`` loss computes it, with the
    output projection applied only from the first labelled position on.

    Batches are left-padded, so when the prompt is masked (``train_on_inputs=false``) every labelled token sits in
    the last few positions; projecting only those onto the vocabulary skips most of the largest matrix product of a
    small model (SmolLM2: a 49,152 x 576 head, ~25% of a CPU step). With every position labelled it is the plain
    forward pass.
    """
    labels = batch["labels"]
    counted = (labels[:, 1:] != IGNORE_INDEX).any(0).nonzero()
    first = int(counted[0]) if len(counted) else 0
    if first == 0:
        return forward(**batch).loss
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    keep = labels.shape[1] - first  # positions first .. end; the last one predicts nothing
    logits = forward(**inputs, logits_to_keep=keep).logits[:, :-1]
    return torch.nn.functional.cross_entropy(
        logits.float().flatten(0, 1), labels[:, first + 1 :].flatten(), ignore_index=IGNORE_INDEX
    )


def train(
    model: torch.nn.Module,
    examples: Sequence[Mapping[str, list[int]]],
    cfg: Mapping,
    pad_id: int,
    seed: int,
    device: torch.device,
    on_log: Callable[[dict[str, float], int], None] = lambda metrics, step: None,
    checkpoint_dir: Path | None = None,
    resume_from: Path | None = None,
    dist: Distributed | None = None,
) -> TrainResult:
    """Fine-tune the trainable parameters of ``model`` on tokenized examples; the base stays frozen.

    With ``checkpoint_dir``, a checkpoint is saved every ``save_every`` steps and when SIGTERM arrives (then
    ``Preempted`` is raised). ``resume_from`` continues from a checkpoint exactly: same data order, same dropout
    masks, same optimizer state, so the final weights equal those of an uninterrupted run. Under ``dist`` with
    several processes, each takes its share of every step's micro-batches; DDP averages the gradients, so the
    steps equal a single process's with the same global batch (dropout masks aside). Only rank 0 saves.
    """
    dist = dist or Distributed()
    batch_size, micro = int(cfg["batch_size"]), int(cfg["micro_batch_size"])
    total_steps = optimizer_steps(len(examples), cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    scheduler = linear_warmup_decay(optimizer, int(cfg["warmup_steps"]), total_steps)
    scaler = gradient_scaler(device, cfg.get("autocast"))
    order_rng = torch.Generator().manual_seed(seed)
    # Where training stands: everything a checkpoint must restore besides weights and optimizer.
    progress_state: dict[str, Any] = {"steps": 0, "order": [], "cursor": 0, "tokens": 0, "window": [], "history": []}
    if resume_from is not None:
        state = checkpoint.load(resume_from, model)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        order_rng.set_state(state["order_rng"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        progress_state = state["progress"]
        log.info("resumed from %s at step %d", resume_from, progress_state["steps"])
    model.train()
    model.config.use_cache = False
    forward = model
    if dist.world > 1:
        forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.get("compile"):
        forward = torch.compile(forward)  # the first steps pay for compilation; saving still reads ``model``

    def save() -> None:
        state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "order_rng": order_rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "progress": progress_state,
        }
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        if dist.main:
            checkpoint.save(checkpoint_dir, progress_state["steps"], model, state)

    # SIGTERM (what SLURM sends before preemption) and SIGINT (Ctrl-C) both end the run at the next step boundary,
    # after a checkpoint, instead of mid-step with a traceback.
    terminated: list[int] = []
    previous_handlers: dict[int, Any] = {}
    if checkpoint_dir is not None and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous_handlers[sig] = signal.signal(sig, lambda signum, frame: terminated.append(signum))

    ps = progress_state
    save_every = int(cfg["save_every"] or 0)
    start = time.perf_counter()
    progress = tqdm(
        total=total_steps,
        initial=ps["steps"],
        desc="train",
        unit="step",
        dynamic_ncols=True,
        disable=None if dist.main else True,
    )
    try:
        while ps["steps"] < total_steps:
            if ps["cursor"] >= len(ps["order"]):  # a new epoch
                order = torch.randperm(len(examples), generator=order_rng).tolist()
                if cfg["group_by_length"]:
                    order = grouped_by_length(order, [len(e["input_ids"]) for e in examples], batch_size)
                ps["order"], ps["cursor"] = order, 0
            step_ids = ps["order"][ps["cursor"] : ps["cursor"] + batch_size]
            ps["cursor"] += batch_size
            micro_batches = [step_ids[i : i + micro] for i in range(0, len(step_ids), micro)][dist.rank :: dist.world]
            step_loss, step_tokens = 0.0, 0
            for index, ids in enumerate(micro_batches):
                batch = {k: v.to(device) for k, v in collate([examples[i] for i in ids], pad_id).items()}
                # Gradients are averaged across processes once per step, on the last micro-batch.
                last = index == len(micro_batches) - 1
                with nullcontext() if last or dist.world == 1 else forward.no_sync():
                    with autocast(device, cfg.get("autocast")):
                        loss = causal_lm_loss(forward, batch) / len(micro_batches)
                    scaler.scale(loss).backward()
                step_loss += loss.item()
                step_tokens += int(batch["attention_mask"].sum())  # non-padding tokens processed
            step_loss = dist.mean(step_loss)
            ps["tokens"] += dist.total(step_tokens)
            if not math.isfinite(step_loss):
                raise FloatingPointError(f"non-finite training loss {step_loss} at step {ps['steps'] + 1}")
            scaler.unscale_(optimizer)  # clipping sees the true gradients
            if cfg["max_grad_norm"]:
                torch.nn.utils.clip_grad_norm_(params, float(cfg["max_grad_norm"]))
            scaler.step(optimizer)  # skipped (and the scale lowered) when float16 gradients overflowed
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            ps["steps"] += 1
            ps["window"].append(step_loss)
            progress.update()
            if ps["steps"] % int(cfg["log_every"]) == 0 or ps["steps"] == total_steps:
                mean_loss = sum(ps["window"]) / len(ps["window"])
                ps["history"].append([ps["steps"], mean_loss])
                lr = scheduler.get_last_lr()[0]
                progress.set_postfix(loss=f"{mean_loss:.3f}")
                on_log({"train/loss": mean_loss, "train/lr": lr}, ps["steps"])
                log.info("step %d/%d loss %.4f lr %.2e", ps["steps"], total_steps, mean_loss, lr)
                ps["window"] = []
            stop = dist.any(bool(terminated))  # every process stops at the same step
            if checkpoint_dir is not None and (stop or (save_every and ps["steps"] % save_every == 0)):
                save()
            if stop:
                name = signal.Signals(terminated[0]).name if terminated else "a stop signal"  # another rank's
                raise Preempted(f"{name} at step {ps['steps']}: checkpoint saved in {checkpoint_dir}")
    finally:
        progress.close()
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    return TrainResult(
        steps=ps["steps"], seconds=time.perf_counter() - start, tokens=ps["tokens"], loss_history=ps["history"]
    )
