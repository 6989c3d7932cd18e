"""The one-screen report ``python run.py`` prints when a job ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm_adapters.evaluation.scoring import score_text


def summary(results: dict[str, Any], job_dir: Path) -> str:
    """The one-screen report printed at the end of ``python run.py``."""
    p, t = results["params"], results["train"]
    history = t["loss_history"]
    lines = [
        f"llm-adapters: {results['adapter']} @ {results['placement']} on {results['model']} / {results['dataset']}"
        f" (seed {results['seed']}, protocol {results['protocol']['name']}): {results['status']}",
        f"  trainable params  {p['trainable']:,} of {p['total']:,} ({p['trainable_pct']:.3f}%)",
        f"  train loss        {history[0][1]:.4f} -> {history[-1][1]:.4f} over {t['steps']} steps"
        f" ({t['seconds']:.1f} s, {t['tokens_per_second']:,.0f} tokens/s)"
        if history
        else f"  evaluated         the saved adapter {results['config']['adapter_path']} (no training)"
        if results["config"].get("adapter_path")
        else "  train             none (the base model, zero-shot)",
    ]
    base = results.get("zero_shot") or {}
    for name, m in results["eval"].items():
        before = f"zero-shot {score_text(base[name])} -> " if name in base else ""
        lines.append(f"  accuracy          {name}: {before}{score_text(m)}, {m['seconds']:.1f} s")
    lines += [f"  total time        {results['seconds']:.1f} s", f"  results           {job_dir / 'results.json'}"]
    return "\n".join(lines)
