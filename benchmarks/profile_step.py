"""Where a training step's time goes: torch profiler tables (top operators by self CPU time) of one step of the
frozen floor, LoRA (dropout 0.05, and 0), and the parallel adapter on the benchmark model: the evidence behind the
missed ``<adapter>_vs_floor`` targets in benchmarks/README.md.

    python -m benchmarks.profile_step [--device cuda] [--repeats 3]
"""

from __future__ import annotations

import copy
import json

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import base_model, machine, parser, with_adapter
from benchmarks.train_throughput import BATCH, LENGTH, floor_step, train_step
from llm_adapters.adapters import set_adapter_dropout


def main() -> None:
    args = parser(__doc__.split("\n\n")[0]).parse_args()
    base = base_model(args.model, args.device, hidden=args.hidden, layers=args.layers)
    ids = torch.randint(3, base.config.vocab_size, (BATCH, LENGTH), device=args.device)
    no_dropout = with_adapter(copy.deepcopy(base), "lora")
    steps = {
        "floor": floor_step(copy.deepcopy(base), ids),
        "lora": train_step(with_adapter(copy.deepcopy(base), "lora"), ids),
        "lora_dropout0": train_step(no_dropout, ids),
        "parallel": train_step(with_adapter(copy.deepcopy(base), "parallel"), ids),
    }
    set_adapter_dropout(no_dropout, active=False)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
    totals = {}
    for name, step in steps.items():
        step()
        step()
        with profile(activities=activities) as prof:
            for _ in range(args.repeats):
                step()
        table = prof.key_averages()
        totals[name] = {
            "self_cpu_ms_per_step": sum(e.self_cpu_time_total for e in table) / 1e3 / args.repeats,
            "top": {
                e.key: round(e.self_cpu_time_total / 1e3 / args.repeats, 1)
                for e in sorted(table, key=lambda e: -e.self_cpu_time_total)[:6]
            },
        }
        print(f"== {name}")
        print(table.table(sort_by="self_cpu_time_total", row_limit=8, max_name_column_width=40))
    print(json.dumps({**totals, "machine": machine()}))


if __name__ == "__main__":
    main()
