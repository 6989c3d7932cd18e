"""AdaLoRA through the bridge and the training hooks: the harness's loop (its loss term, its reallocation after each
step, before the gradients are cleared) moves the weights and the rank budget exactly as PEFT's documented loop
does; what a checkpoint holds continues the schedule; the learned rank pattern travels in the PEFT-format copy."""

import copy

import peft
import pytest
import torch

from llm_adapters.adapters import prepare, saving, targets_for, train_hooks
from llm_adapters.adapters.peft_bridge import peft_config
from llm_adapters.job.config import ConfigError, validate
from llm_adapters.training import accumulate, causal_lm_loss
from llm_adapters.training.distributed import Distributed
from llm_adapters.training.optimization import Optimization, linear_warmup_decay
from tests.helpers.configs import make_config
from tests.helpers.models import tiny_model
from tests.helpers.peft_models import IDS, adapter_of

STEPS = 8
CPU = torch.device("cpu")
TRAIN = {"lr": 1e-2, "weight_decay": 0.0, "warmup_steps": 0}
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def batches(n: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(3)
    out = []
    for _ in range(n):
        ids = torch.randint(3, 100, (4, 10), generator=generator)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()})
    return out


def adalora(**keys):
    adapter, placement = adapter_of("adalora")
    return {**adapter, **keys}, placement


def ours_and_peft(adapter, placement):
    base = tiny_model("llama")
    targets = targets_for(base.config, adapter, placement)
    ours = copy.deepcopy(base)
    torch.manual_seed(0)
    prepare(ours, adapter, targets)
    torch.manual_seed(0)
    config = peft_config(adapter, targets, task_type="CAUSAL_LM", total_step=STEPS)
    return ours, peft.get_peft_model(copy.deepcopy(base), config), targets


def test_the_loss_has_adaloras_orthogonality_penalty_as_peft_adds_it():
    ours, theirs, _ = ours_and_peft(*adalora())
    (batch,) = batches(1)
    (hook,) = train_hooks.of(ours)
    assert hook.loss() is not None and float(hook.loss()) > 0  # random A, B are not orthonormal
    torch.testing.assert_close(causal_lm_loss(ours, batch) + hook.loss(), theirs(**batch).loss, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("tinit", "tfinal"), [(0, 0), (1, 3)])
def test_the_rank_budget_moves_as_in_peft_s_own_loop(tinit, tfinal, tmp_path):
    adapter, placement = adalora(tinit=tinit, tfinal=tfinal)
    ours, theirs, targets = ours_and_peft(adapter, placement)
    opt = Optimization.build(ours, TRAIN, STEPS, 0, CPU)
    params = [p for p in theirs.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=TRAIN["lr"], weight_decay=0.0)
    schedule = linear_warmup_decay(optimizer, 0, STEPS)
    for step, batch in enumerate(batches(STEPS), start=1):
        accumulate(ours, [batch], opt, None, Distributed())
        opt.step(None, step)
        theirs(**batch).loss.backward()  # PEFT's loop, as its update_and_allocate documents it
        optimizer.step()
        schedule.step()
        theirs.base_model.update_and_allocate(step)
        optimizer.zero_grad()
    mine, peft_s = ours._peft_tuner.peft_config["default"], theirs.peft_config["default"]
    assert mine.rank_pattern == peft_s.rank_pattern and mine.rank_pattern
    kept = sum(sum(mask) for mask in mine.rank_pattern.values())
    assert kept == adapter["target_r"] * len(targets)  # the final budget reached, on average target_r a matrix
    expected = {n.removeprefix("base_model.model."): p for n, p in theirs.named_parameters() if p.requires_grad}
    for name, value in ours.named_parameters():
        if value.requires_grad:
            torch.testing.assert_close(value, expected[name], atol=1e-5, rtol=0)
    # The PEFT-format copy carries the rank pattern: PEFT cuts each layer to its kept ranks and gives the same logits
    saving.save(ours, adapter, "tiny", targets, tmp_path)
    loaded = peft.PeftModel.from_pretrained(tiny_model("llama"), str(tmp_path / "peft")).eval()
    ranks = {n: m.r["default"] for n, m in loaded.named_modules() if hasattr(m, "lora_E")}
    assert sum(ranks.values()) == kept
    torch.testing.assert_close(loaded(input_ids=IDS).logits, ours.eval()(input_ids=IDS).logits, atol=1e-5, rtol=0)


def test_a_schedule_the_run_is_too_short_for_is_one_line_before_the_first_step():
    adapter, placement = adalora(tinit=3, tfinal=5)
    model = tiny_model("llama")
    prepare(model, adapter, targets_for(model.config, adapter, placement))
    with pytest.raises(ConfigError, match=r"adapter.tinit \(3\) \+ adapter.tfinal \(5\) leave no step of the run's 8"):
        Optimization.build(model, TRAIN, STEPS, 0, CPU)


def test_a_target_rank_not_below_the_initial_one_is_one_line_before_anything_is_built():
    """PEFT takes target_r >= init_r and fails inside the first reallocation: its budget mask has nothing to prune
    (``kthvalue`` with k = 0, as the methods study's first AdaLoRA job found at init_r = target_r = 8)."""
    with pytest.raises(ConfigError, match=r"adapter.target_r \(8\) must be below adapter.init_r \(4\) for 'adalora'"):
        validate(make_config("adapter=adalora", "adapter.init_r=4"))
    with pytest.raises(ConfigError, match=r"adapter.target_r \(4\) must be below adapter.init_r \(4\)"):
        validate(make_config("adapter=adalora", "adapter.init_r=4", "adapter.target_r=4"))
    validate(make_config("adapter=adalora", "adapter.init_r=4", "adapter.target_r=3"))
    model = tiny_model("llama")
    adapter, placement = adalora(init_r=4, target_r=6)
    with pytest.raises(ConfigError, match=r"adapter.target_r \(6\) must be below"):  # a size +budget tries, refused
        prepare(model, adapter, targets_for(model.config, adapter, placement))


def test_a_run_at_the_smallest_gap_reallocates_to_its_target():
    """target_r one below init_r: the budget falls by one rank a matrix, and PEFT's schedule runs to the end."""
    adapter, placement = adalora(init_r=3, target_r=2)
    model = tiny_model("llama")
    targets = targets_for(model.config, adapter, placement)
    prepare(model, adapter, targets)
    opt = Optimization.build(model, TRAIN, STEPS, 0, CPU)
    for step, batch in enumerate(batches(STEPS), start=1):
        accumulate(model, [batch], opt, None, Distributed())
        opt.step(None, step)
    pattern = model._peft_tuner.peft_config["default"].rank_pattern
    assert sum(sum(mask) for mask in pattern.values()) == 2 * len(targets)


# across the checkpoint: the importance averages (quick); the final rank pattern (slow)
@pytest.mark.parametrize("tfinal", [0, pytest.param(5, marks=pytest.mark.slow)])
def test_a_resumed_run_continues_the_schedule(tfinal, tmp_path):
    from llm_adapters.data.synthetic_math import generate
    from llm_adapters.data.training_examples import tokenize_for_training
    from llm_adapters.job.phases import set_seed
    from llm_adapters.training import train
    from tests.helpers.configs import FAST, build_model

    def fitted(**kwargs):
        cfg = make_config(*FAST, "adapter=adalora", "adapter.tinit=1", f"adapter.tfinal={tfinal}", "train.max_steps=8")
        cfg.train.save_every, cfg.train.warmup_steps = 4, 0
        set_seed(0)
        built = build_model(cfg)
        examples = tokenize_for_training(generate(32, 0, seed=0)[0], built.tokenizer, 64, False)
        train(
            built.model, examples, cfg.train, built.tokenizer.pad_token_id, seed=0, device=torch.device("cpu"), **kwargs
        )
        return {n: p.detach().clone() for n, p in built.model.named_parameters() if p.requires_grad}

    whole = fitted(checkpoint_dir=tmp_path / "checkpoints")
    resumed = fitted(resume_from=tmp_path / "checkpoints" / "step-4")
    assert resumed.keys() == whole.keys() and all(torch.equal(resumed[n], whole[n]) for n in whole)


class Recorder:
    """A hook that records the steps it is told of and adds a constant to the loss (which moves no weight)."""

    def __init__(self, term: float) -> None:
        self.term, self.steps, self.total = term, [], None

    def start(self, total_steps):
        self.total = total_steps

    def loss(self):
        return torch.tensor(self.term)

    def after_step(self, step):
        self.steps.append(step)

    def state_dict(self):
        return {"steps": list(self.steps)}

    def load_state_dict(self, state):
        self.steps = list(state["steps"])


def test_the_training_loop_calls_the_hooks_of_any_adapter():
    from llm_adapters.data.synthetic_math import generate
    from llm_adapters.data.training_examples import tokenize_for_training
    from llm_adapters.job.phases import set_seed
    from llm_adapters.training import train
    from tests.helpers.configs import FAST, build_model

    def run(term):
        cfg = make_config(*FAST, "adapter=lora", "train.max_steps=5", "train.log_every=1")
        set_seed(0)
        built = build_model(cfg)
        hook = Recorder(term)
        train_hooks.attach(built.model, hook)
        examples = tokenize_for_training(generate(32, 0, seed=0)[0], built.tokenizer, 64, False)
        result = train(built.model, examples, cfg.train, built.tokenizer.pad_token_id, seed=0, device=CPU)
        return hook, [loss for _, loss in result.loss_history]

    hook, with_term = run(10.0)
    assert hook.total == 5 and hook.steps == [1, 2, 3, 4, 5]  # after every optimizer step, numbered from 1
    _, without = run(0.0)
    assert with_term == pytest.approx([loss + 10.0 for loss in without], abs=1e-4)  # in the loss, moving nothing
