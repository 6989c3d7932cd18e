"""Job directories written by hand for the analysis tests: a results.json and its prediction rows, so a table, a
comparison or a power figure is checked on scores chosen to give a known answer."""

from __future__ import annotations

import json

from llm_adapters.files import write_json


def handmade_job(root, name, adapter, seed, acc, norm, method="loglik", placement="attn", model="m"):
    """A job directory by hand: its results.json and one prediction row per question of arc_e."""
    directory = root / name
    directory.mkdir(parents=True)
    n = len(acc)
    metrics = {"accuracy": 100.0 * sum(acc) / n, "n": n}
    if method == "loglik":
        metrics["accuracy_norm"] = 100.0 * sum(norm) / n
    write_json(
        directory / "results.json",
        {
            "status": "ok",
            "axes": {"model": model, "adapter": adapter, "placement": placement, "size": 8, "dataset": "d"}
            | {"seed": seed, "method": method},
            "config": {"seed": seed, "eval": {"method": method}},
            "params": {"trainable": 10, "trainable_pct": 1.0},
            "eval": {"arc_e": metrics},
        },
    )
    rows = [
        {"id": f"arc_e/{i}", "prompt": "Answer format: answer1/answer2/answer3/answer4"}
        | {"answer": "answer1", "correct": bool(a)}
        | ({"correct_norm": bool(b)} if method == "loglik" else {})
        for i, (a, b) in enumerate(zip(acc, norm, strict=True))
    ]
    (directory / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def add_set(directory, name, acc):
    """Another evaluation set on a job made by ``handmade_job``: its metrics and its prediction rows."""
    results = json.loads((directory / "results.json").read_text())
    results["eval"][name] = {"accuracy": 100.0 * sum(acc) / len(acc), "n": len(acc)}
    write_json(directory / "results.json", results)
    rows = [{"id": f"{name}/{i}", "answer": "true", "correct": bool(a)} for i, a in enumerate(acc)]
    with (directory / "predictions.jsonl").open("a") as out:
        out.write("".join(json.dumps(r) + "\n" for r in rows))
