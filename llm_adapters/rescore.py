"""Re-score saved generations without a model.

    python -m llm_adapters.rescore --dataset aqua --predictions preds.jsonl [--protocol paper|fixed] [--write out.jsonl]

The input is JSON lines (or one JSON list, such as a dataset's test.json) whose records carry ``output`` or
``generation`` and ``answer``. One JSON object goes to stdout: ``accuracy`` (percent), ``n``, ``correct``. The rules
are those of the job's evaluation (``scoring.score``) under the named protocol's switches (conf/protocol/).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from llm_adapters import CONF_DIR
from llm_adapters.data.sets import EVAL_SETS, DataError, eval_set
from llm_adapters.errors import OneLineParser
from llm_adapters.evaluation.scoring import score
from llm_adapters.files import write_jsonl

PROTOCOL_DIR = CONF_DIR / "protocol"


def read_predictions(path: Path) -> list[dict]:
    """JSON lines, or a single JSON list; each record must have ``output`` or ``generation``, and ``answer``."""
    text = path.read_text()
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    else:
        records = []
        for number, line in enumerate(text.splitlines(), 1):  # a JSON line's own number, not its offset in it
            try:
                records += [json.loads(line)] if line.strip() else []
            except json.JSONDecodeError as error:
                raise DataError(f"{path}: not valid JSON ({error.msg} at line {number})") from None
    if not records:
        raise DataError(f"{path}: no records to score (the file is empty)")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{path}: record {index}: a JSON object is needed, not {json.dumps(record)[:40]}")
        if "answer" not in record or not ({"output", "generation"} & record.keys()):
            raise DataError(f"{path}: record {index}: needs 'answer' and 'output' or 'generation'")
        text_key = "generation" if "generation" in record else "output"
        if not isinstance(record[text_key], str):
            raise DataError(f"{path}: record {index}: '{text_key}' must be a string (got {record[text_key]!r})")
        if isinstance(record["answer"], bool) or not isinstance(record["answer"], str | int | float):
            raise DataError(f"{path}: record {index}: 'answer' must be a string or a number (got {record['answer']!r})")
    return records


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m llm_adapters.rescore", description=__doc__.split("\n\n")[0])
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
