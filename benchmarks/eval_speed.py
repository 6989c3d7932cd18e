"""Evaluation speed: the paper's protocol as its evaluate.py ran it (one example at a time, 4 beams, no KV cache)
against ours (batched with left padding and an attention mask, KV cache, LoRA merged, the prompt prefilled once
per prompt rather than once per beam), on real test prompts, with the same decoding settings; and whether both give
the same predictions. Also: ours against transformers' own beam search on the same batches (the prompt processed
once per beam, the cache grown by concatenation and reordered whole every token), and greedy against beam search.

    python -m benchmarks.eval_speed [--model smollm2-135m] [--device cuda] [--prompts 16] [--new-tokens 32]
                                    [--batch-size 16] [--hidden 512] [--layers 8] [--arc N] [--arc-whole]
"""

from __future__ import annotations

import copy
import json
import time

import torch
from omegaconf import OmegaConf

from benchmarks.common import SHARED, base_model, machine, parser, tokenizer_for, with_adapter
from llm_adapters.adapters import merge_adapters
from llm_adapters.data.sets import EVAL_SETS, load_records
from llm_adapters.data.synthetic_math import generate as synthetic
from llm_adapters.data.templates import evaluation_prompt
from llm_adapters.evaluation import generation
from llm_adapters.evaluation.generation import generate
from llm_adapters.job.composition import compose
from llm_adapters.model.loading import contiguous_head_input


def prompts(n: int) -> tuple[list[str], str]:
    """The first ``n`` GSM8K test prompts when the shared data is there, else synthetic ones."""
    path = SHARED / EVAL_SETS["gsm8k"].path
    if path.is_file():
        return [evaluation_prompt(r["instruction"]) for r in load_records(path)[:n]], "gsm8k"
    return [evaluation_prompt(r["instruction"]) for r in synthetic(n, 0, seed=0)[0]], "synthetic"


def likelihood_vs_generation(model, tokenizer, n: int, batch_size: int, device) -> dict[str, object]:
    """The first ``n`` ARC-Easy test questions scored as a job scores them: generation (4 beams, 32 new tokens, the
    paper's commonsense decoding) and log-likelihood in both prompt styles, on the fp32 base and on a bf16 copy of it
    (the projections' matmuls on the CPU's bf16 units where it has them); seconds, questions per second, ratios."""
    from llm_adapters.evaluation import generation, likelihood

    spec = EVAL_SETS["arc_e"]
    records = load_records(SHARED / spec.path, spec)[:n]
    seconds = {}
    methods = (("generate", generation, None), ("loglik", likelihood, None), ("loglik_lm_eval", likelihood, "lm_eval"))
    for name, module, style in methods:
        seconds[name] = _timed(module, model, tokenizer, records, batch_size, style, device)
    half = bf16_copy(model)
    seconds["loglik_bf16"] = _timed(likelihood, half, tokenizer, records, batch_size, None, device)
    seconds["generate_bf16"] = _timed(generation, half, tokenizer, records, batch_size, None, device)
    return {
        "loglik_vs_generate": seconds["generate"] / seconds["loglik"],
        "loglik_lm_eval_vs_generate": seconds["generate"] / seconds["loglik_lm_eval"],
        "loglik_questions_per_second": n / seconds["loglik"],
        "loglik_lm_eval_questions_per_second": n / seconds["loglik_lm_eval"],
        "loglik_bf16_vs_fp32": seconds["loglik"] / seconds["loglik_bf16"],
        "generate_bf16_vs_fp32": seconds["generate"] / seconds["generate_bf16"],
        "arc_e_questions": n,
        "arc_e_seconds": seconds,
    }


def _timed(module, model, tokenizer, records, batch_size: int, style: str | None, device) -> float:
    """Seconds to evaluate ``records`` with a job's evaluation config (composed by Hydra as a job composes it)."""
    overrides = [f"eval.batch_size={batch_size}"] + ([f"eval.prompt={style}"] if style else [])
    job = compose("protocol=fixed", "eval=commonsense", *overrides)
    protocol, cfg = OmegaConf.to_container(job.protocol), OmegaConf.to_container(job.eval)
    start = time.perf_counter()
    module.evaluate_set(model, tokenizer, EVAL_SETS["arc_e"], records, cfg, protocol, device)
    return time.perf_counter() - start


def bf16_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The model in bf16, as ``model.dtype=bfloat16`` loads it (the head's input made contiguous: ``load_model``)."""
    half = copy.deepcopy(model).to(torch.bfloat16)
    contiguous_head_input(half)
    return half


def whole_arc_e(model, tokenizer, batch_size: int, device) -> dict[str, float]:
    """Seconds for the whole ARC-Easy test (2,376 questions), loglik in both prompt styles, fp32 and bf16."""
    from llm_adapters.evaluation import likelihood

    spec = EVAL_SETS["arc_e"]
    records = load_records(SHARED / spec.path, spec)
    half, out = bf16_copy(model), {}
    for dtype, m in (("fp32", model), ("bf16", half)):
        for style in ("paper", "lm_eval"):
            seconds = _timed(likelihood, m, tokenizer, records, batch_size, None if style == "paper" else style, device)
            out[f"arc_e_whole_{style}_{dtype}_seconds"] = seconds
            print(f"whole ARC-Easy ({len(records)}), loglik {style} {dtype}: {seconds:.0f} s", flush=True)
    return out


def paper_protocol(model, tokenizer, texts: list[str], beams: int, new_tokens: int, device) -> list[str]:
    """evaluate.py's loop: each prompt alone, no padding, no KV cache."""
    outputs = []
    for text in texts:
        ids = tokenizer(text, return_tensors="pt").input_ids.to(device)
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                num_beams=beams,
                max_new_tokens=new_tokens,
                do_sample=False,
                use_cache=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        outputs.append(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    return outputs


def main() -> None:
    options = parser(__doc__.split("\n\n")[0])
    options.add_argument("--prompts", type=int, default=16)
    options.add_argument("--new-tokens", type=int, default=32)
    options.add_argument("--batch-size", type=int, default=16)
    options.add_argument("--arc", type=int, default=0, help="also: this many ARC-Easy questions, loglik vs generate")
    options.add_argument("--arc-whole", action="store_true", help="also: the whole ARC-Easy test by loglik")
    args = options.parse_args()
    device = torch.device(args.device)
    tokenizer = tokenizer_for(args.model)
    base = base_model(args.model, "cpu", hidden=args.hidden, layers=args.layers, tokenizer=tokenizer)
    model = with_adapter(base, "lora").to(device).eval()
    with torch.no_grad():  # a trained-looking adapter: B away from zero
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.02)
    texts, source = prompts(args.prompts)
    ours_cfg = {"batch_size": args.batch_size, "num_beams": 4, "max_new_tokens": args.new_tokens}

    start = time.perf_counter()
    reference = paper_protocol(model, tokenizer, texts, 4, args.new_tokens, device)
    paper_seconds = time.perf_counter() - start
    merge_adapters(model)  # as eval.merge_adapters does (dropout is off in eval mode, so outputs are unchanged)
    start = time.perf_counter()
    ours = generate(model, tokenizer, texts, ours_cfg, device)
    ours_seconds = time.perf_counter() - start
    prefill_once = generation.prefill_once
    generation.prefill_once = lambda *args: {}  # generate's own prefill and cache
    try:
        start = time.perf_counter()
        per_beam = generate(model, tokenizer, texts, ours_cfg, device)
        per_beam_seconds = time.perf_counter() - start
    finally:
        generation.prefill_once = prefill_once
    start = time.perf_counter()
    generate(model, tokenizer, texts, {**ours_cfg, "num_beams": 1}, device)
    greedy_seconds = time.perf_counter() - start

    figures = {
        "eval_speedup": paper_seconds / ours_seconds,
        "predictions_identical": ours == reference,
        "identical_count": sum(a == b for a, b in zip(ours, reference, strict=True)),
        "vs_transformers_beam_search": per_beam_seconds / ours_seconds,
        "transformers_beam_search_identical": per_beam == ours,
        "greedy_vs_beam": greedy_seconds / ours_seconds,
        "seconds": {
            "paper_protocol": paper_seconds,
            "ours_beam4": ours_seconds,
            "transformers_beam4_batched": per_beam_seconds,
            "ours_greedy": greedy_seconds,
        },
        "prompts": len(texts),
        "source": source,
        "new_tokens": args.new_tokens,
        "device": args.device,
        "model": args.model or f"built (hidden {args.hidden}, {args.layers} layers)",
        "machine": machine(),
    }
    print(
        f"eval_speedup {figures['eval_speedup']:.1f}x, predictions identical: {figures['predictions_identical']}"
        f" ({figures['identical_count']}/{len(texts)}), greedy/beam time {figures['greedy_vs_beam']:.2f}"
    )
    if args.arc and (SHARED / EVAL_SETS["arc_e"].path).is_file():
        figures |= likelihood_vs_generation(model, tokenizer, args.arc, args.batch_size, device)
        print(f"loglik_vs_generate {figures['loglik_vs_generate']:.1f}x on {args.arc} ARC-Easy questions")
    if args.arc_whole and (SHARED / EVAL_SETS["arc_e"].path).is_file():
        figures |= whole_arc_e(model, tokenizer, args.batch_size, device)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
