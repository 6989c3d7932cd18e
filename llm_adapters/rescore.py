"""Re-score saved generations without a model.

    python -m llm_adapters.rescore --dataset aqua --predictions preds.jsonl [--protocol paper|fixed] [--write out.jsonl]

The input is JSON lines (or one JSON list, such as a dataset's test.json) whose records carry ``output`` or
``generation`` and ``answer``. One JSON object goes to stdout: ``accuracy`` (percent), ``n``, ``correct``. The rules
are those of the job's evaluation (``scoring.score``) under the named protocol's switches (conf/protocol/).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from llm_adapters import CONF_DIR
from llm_adapters.files import write_jsonl
from llm_adapters.records import EVAL_SETS, DataError, eval_set
from llm_adapters.scoring import score

PROTOCOL_DIR = CONF_DIR / "protocol"


def read_predictions(path: Path) -> list[dict]:
    """JSON lines, or a single JSON list; each record must have ``output`` or ``generation``, and ``answer``."""
    text = path.read_text()
    try:
        records = (
            json.loads(text)
            if text.lstrip().startswith("[")
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    for index, record in enumerate(records):
        if "answer" not in record or not ({"output", "generation"} & record.keys()):
            raise DataError(f"{path}: record {index}: needs 'answer' and 'output' or 'generation'")
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_adapters.rescore", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=sorted([*EVAL_SETS, "synthetic_math"]))
    parser.add_argument("--predictions", required=True, type=Path)
    parser.add_argument("--protocol", default="paper", choices=sorted(p.stem for p in PROTOCOL_DIR.glob("*.yaml")))
    parser.add_argument("--write", type=Path, help="keep the per-record extraction as JSON lines")
    args = parser.parse_args(argv)
    try:
        records = read_predictions(args.predictions)
    except (OSError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    protocol = OmegaConf.load(PROTOCOL_DIR / f"{args.protocol}.yaml")
    generations = [r.get("generation", r.get("output")) for r in records]
    metrics, rows = score(generations, [str(r["answer"]) for r in records], eval_set(args.dataset), protocol)
    if args.write:
        write_jsonl(args.write, rows)
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
