"""The training loop: AdamW, linear warm-up and decay, gradient accumulation, clipping — the HF Trainer settings
the paper's finetune.py ran with, written out as one plain function so the whole path reads top to bottom."""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from llm_adapters import files
from llm_adapters.data.training_examples import IGNORE_INDEX, Examples, collate, grouped_by_length
from llm_adapters.errors import DivergedError
from llm_adapters.model.loading import autocast
from llm_adapters.training import checkpoint, compiling, held_out_loss
from llm_adapters.training.checkpoint import Preempted, stop_signals
from llm_adapters.training.distributed import Distributed
from llm_adapters.training.optimization import Optimization, optimizer_steps

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run reports into results.json."""

    steps: int
    seconds: float
    tokens: int
    loss_history: list[list[float]] = field(default_factory=list)
    val_history: list[list[float]] = field(default_factory=list)  # [step, validation loss] (train.val_set_size)
    best_step: int | None = None  # the step whose weights were kept (train.keep=best), else None: the last
    val_examples: int = 0
    resumed_from: Path | None = None  # the checkpoint it continued from (an older one when the newest was unreadable)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


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


@dataclass
class TrainState:
    """Where training stands: all a checkpoint restores besides the weights, the optimizer, the schedule and the
    random generators. ``order`` is this epoch's example order and ``cursor`` the next position in it; ``window``
    holds the step losses since the last logged mean, ``history`` every logged (step, mean loss)."""

    steps: int = 0
    order: list[int] = field(default_factory=list)
    cursor: int = 0
    tokens: int = 0
    window: list[float] = field(default_factory=list)
    history: list[list[float]] = field(default_factory=list)
    val_history: list[list[float]] = field(default_factory=list)
    best: list[float] | None = None  # [step, validation loss] of the lowest so far
    seconds: float = 0.0  # training time before the last save, so a resumed run's time covers all its steps

    def next_step(self, examples: Examples, cfg: Mapping, rng: torch.Generator) -> list[int]:
        """The example indices of the next optimizer step; a new epoch's order is drawn when this one is used up."""
        batch_size = int(cfg["batch_size"])
        if self.cursor >= len(self.order):
            order = torch.randperm(len(examples), generator=rng).tolist()
            if cfg["group_by_length"]:
                order = grouped_by_length(order, examples.lengths(), batch_size)
            self.order, self.cursor = order, 0
        self.cursor += batch_size
        return self.order[self.cursor - batch_size : self.cursor]

    def finish_step(self, loss: float, tokens: int, log_every: int, total: int) -> float | None:
        """Count a finished step; at a logging step (every ``log_every``, and the first and the last), the mean loss
        since the last one (else None)."""
        self.steps += 1
        self.tokens += tokens
        self.window.append(loss)
        if self.steps % log_every and self.steps not in (1, total):  # the first and last steps always show
            return None
        mean = sum(self.window) / len(self.window)
        self.history.append([self.steps, mean])
        self.window = []
        return mean


def shares(ids: list[int], micro: int, dist: Distributed) -> tuple[list[list[int]], bool]:
    """This process's micro-batches of one step: whole micro-batches dealt out across processes, or, when there
    are fewer micro-batches than processes, a slice of every one (then True: the loss is weighted to stay the same)."""
    batches = [ids[i : i + micro] for i in range(0, len(ids), micro)]
    if len(batches) >= dist.world:
        return batches[dist.rank :: dist.world], False
    return [batch[dist.rank :: dist.world] for batch in batches], True


def accumulate(
    forward: Callable[..., Any],
    micro_batches: Sequence[Mapping[str, torch.Tensor]],
    opt: Optimization,
    precision: str | None,
    dist: Distributed,
    split: bool = False,
) -> tuple[float, int]:
    """Gradients of one step's micro-batches, each loss with the adapters' hook terms (``opt.extra_loss``), averaged
    across processes once, on the last; its loss and the non-padding tokens processed. A slice of a micro-batch split
    across processes weighs its mean loss by its share of the labelled tokens: the gradient is as on one process."""
    loss_sum, tokens, world = 0.0, 0, dist.world
    for index, batch in enumerate(micro_batches):
        last = index == len(micro_batches) - 1
        weight = 1.0
        if split:
            mine = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
            weight = mine * world / max(1, dist.total(mine))
        with nullcontext() if last or world == 1 else forward.no_sync():
            with autocast(batch["input_ids"].device, precision):
                loss = (causal_lm_loss(forward, batch) + opt.extra_loss()) * weight / len(micro_batches)
            opt.scaler.scale(loss).backward()
        loss_sum += loss.item()
        tokens += int(batch["attention_mask"].sum())
    return loss_sum, tokens


def train(
    model: torch.nn.Module,
    examples: Examples,
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
    examples, held_out = held_out_loss.split(examples, int(cfg["val_set_size"]))
    total, micro = optimizer_steps(len(examples), cfg), int(cfg["micro_batch_size"])
    opt = Optimization.build(model, cfg, total, seed, device)
    state, best_weights, used = TrainState(), None, None
    if resume_from is not None:
        saved, used = checkpoint.load_usable(resume_from, model)
        state, best_weights = TrainState(**opt.restore(saved, device)), saved.get("best_weights")
        log.info("resumed from %s at step %d", used, state.steps)
    forward = _forward(model, cfg, dist, device)
    save_every = int(cfg["save_every"] or 0)
    start, before = time.perf_counter(), state.seconds  # before: the time of the steps a resumed run skips
    bar = tqdm(
        total=total, initial=state.steps, desc="train", unit="step", dynamic_ncols=True, disable=not dist.main or None
    )
    with stop_signals(checkpoint_dir is not None) as received, bar:
        while state.steps < total:
            ids = state.next_step(examples, cfg, opt.order_rng)
            mine, split = shares(ids, micro, dist)
            batches = [{k: v.to(device) for k, v in collate(examples.rows(s), pad_id).items()} for s in mine]
            loss, tokens = accumulate(forward, batches, opt, cfg.get("autocast"), dist, split)
            _finite(loss := dist.mean(loss), state.steps + 1, cfg)
            opt.step(cfg["max_grad_norm"], state.steps + 1)
            mean = state.finish_step(loss, dist.total(tokens), int(cfg["log_every"]), total)
            bar.update()
            if mean is not None:
                _report(mean, opt.scheduler.get_last_lr()[0], state.steps, total, bar, on_log)
            if held_out and state.steps % int(cfg["eval_every"]) == 0:
                best_weights = _validate(model, held_out, cfg, pad_id, device, state, on_log) or best_weights
            stop = dist.any(bool(received))  # every process stops at the same step
            if checkpoint_dir is not None and (stop or (save_every and state.steps % save_every == 0)) and dist.main:
                state.seconds = before + time.perf_counter() - start
                checkpoint.save(checkpoint_dir, state.steps, model, opt.state(asdict(state), device), best_weights)
            if stop:
                name = signal.Signals(received[0]).name if received else "a stop signal"  # another rank's
                raise Preempted(f"{name} at step {state.steps}: checkpoint saved in {files.shown(checkpoint_dir)}")
    kept, seconds = _keep(model, cfg["keep"], state, best_weights), before + time.perf_counter() - start
    return TrainResult(state.steps, seconds, state.tokens, state.history, state.val_history, kept, len(held_out), used)


def _finite(loss: float, step: int, cfg: Mapping) -> None:
    """Stop at the first non-finite loss: every later step would be wasted, and the settings are what to change."""
    if not math.isfinite(loss):
        hint = f"(train.lr {cfg['lr']}): a smaller train.lr, or train.max_grad_norm, may train"
        raise DivergedError(f"non-finite training loss {loss} at step {step} {hint}")


def _keep(model: torch.nn.Module, keep: str, state: TrainState, best: dict[str, torch.Tensor] | None) -> int | None:
    """With ``keep: best``, put the best validation step's weights back; the step kept (None: the last)."""
    if keep != "best" or best is None:
        return None
    held_out_loss.restore(model, best)
    log.info("kept the weights of step %d (validation loss %.4f)", state.best[0], state.best[1])
    return int(state.best[0])


def _validate(
    model: torch.nn.Module,
    held_out: Examples,
    cfg: Mapping,
    pad_id: int,
    device: torch.device,
    state: TrainState,
    on_log: Callable,
) -> dict[str, torch.Tensor] | None:
    """The validation loss at this step, logged; a copy of the weights when it is the lowest so far."""
    value = held_out_loss.loss(model, held_out, int(cfg["micro_batch_size"]), pad_id, device, cfg.get("autocast"))
    state.val_history.append([state.steps, value])
    on_log({"val/loss": value}, state.steps)
    log.info("step %d validation loss %.4f", state.steps, value)
    if state.best is not None and value >= state.best[1]:  # the Trainer keeps the first of equal losses
        return None
    state.best = [state.steps, value]
    return held_out_loss.trainable_copy(model)


def _forward(model: torch.nn.Module, cfg: Mapping, dist: Distributed, device: torch.device) -> Any:
    """What a training step calls: the model in training mode, wrapped in DDP across processes and compiled when
    asked (saving still reads ``model``)."""
    model.train()
    model.config.use_cache = False
    forward: Any = model
    if dist.world > 1:
        forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.get("compile"):
        forward = compiling.compile_module(forward)
    return forward


def _report(mean: float, lr: float, step: int, total: int, bar: tqdm, on_log: Callable) -> None:
    bar.set_postfix(loss=f"{mean:.3f}")
    on_log({"train/loss": mean, "train/lr": lr}, step)
    log.info("step %d/%d loss %.4f lr %.2e", step, total, mean, lr)
