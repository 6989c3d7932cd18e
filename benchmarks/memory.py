"""Peak memory of one training step per adapter, against full fine-tuning on the same model and batch:
``<adapter>_mem_vs_full`` (lower is better).

On a GPU the figure is the CUDA allocator's peak over a step. A CPU has no allocator peak to read, so there the step
is accounted from its tensors: every parameter, every gradient, the optimizer's state, and the activations autograd
saved for the backward pass (unique storages; frozen weights that are saved for backward are not counted twice).
Parts that coexist only in part (gradients fill while activations drain) are added, so it is an upper bound of the
same kind for every adapter, which is what a ratio needs. Each job steps twice first, so AdamW's moments exist.

    python -m benchmarks.memory [--model HUB_ID_OR_PATH] [--device cuda]
"""

from __future__ import annotations

import copy
import json

import torch
from tqdm import tqdm

from benchmarks.common import base_model, machine, parser, with_adapter
from llm_adapters.adapters import adapter_kinds

BATCH, LENGTH = 4, 128
KINDS = adapter_kinds()  # every registered kind


def _storage(t: torch.Tensor) -> tuple[int, int]:
    storage = t.untyped_storage()
    return storage.data_ptr(), storage.nbytes()


def step_memory(model: torch.nn.Module, ids: torch.Tensor) -> dict[str, int]:
    """Bytes of one AdamW training step (``peak``, and on a CPU its accounted parts)."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(saved: dict[int, int] | None = None) -> None:
        weights = {_storage(p)[0] for p in model.parameters()}

        def pack(t: torch.Tensor) -> torch.Tensor:
            ptr, size = _storage(t)
            if saved is not None and ptr not in weights:
                saved[ptr] = size
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
        optimizer.zero_grad(set_to_none=True)
    if ids.is_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return {"peak": torch.cuda.max_memory_allocated()}
    saved: dict[int, int] = {}
    step(saved)
    parts = {
        "weights": sum(dict(_storage(p) for p in model.parameters()).values()),
        "gradients": sum(_storage(p.grad)[1] for p in model.parameters() if p.grad is not None),
        "optimizer": sum(
            _storage(v)[1] for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)
        ),
        "activations": sum(saved.values()),
    }
    return {**parts, "peak": sum(parts.values())}


def main() -> None:
    args = parser(__doc__.split("\n\n")[0]).parse_args()
    base = base_model(args.model, args.device, hidden=args.hidden, layers=args.layers)
    ids = torch.randint(3, base.config.vocab_size, (BATCH, LENGTH), device=args.device)
    memory = {}
    for kind in tqdm((*KINDS, "full"), desc="memory"):
        model = copy.deepcopy(base).requires_grad_(True) if kind == "full" else with_adapter(copy.deepcopy(base), kind)
        memory[kind] = step_memory(model, ids)
        del model
    figures = {
        **{f"{kind}_mem_vs_full": memory[kind]["peak"] / memory["full"]["peak"] for kind in KINDS},
        "bytes": memory,
        "method": "cuda allocator peak" if args.device.startswith("cuda") else "accounted tensors (CPU)",
        "model_parameters": sum(p.numel() for p in base.parameters()),
        "batch": [BATCH, LENGTH],
        "device": args.device,
        "machine": machine(),
    }
    for kind in KINDS:
        print(f"{kind + '_mem_vs_full':>28}  {figures[kind + '_mem_vs_full']:.3f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
