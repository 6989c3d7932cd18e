"""The paper's datasets: where each file lives in the LLM-Adapters layout, what its answers look like, and loading
with validation.

Every file is a JSON list of ``{"instruction", "input", "output", "answer"}`` records. A record that cannot be used
stops the job before any model is loaded, with one message naming the file and the record's index.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llm_adapters.errors import DataError

Record = dict[str, str]


@dataclass(frozen=True)
class EvalSet:
    """An evaluation set: its file under the data directory, its domain, and the kind of its answers.

    ``answer``: ``number`` (numeric string, scored by the last number), ``choice`` (an option letter A–E) or
    ``label`` (one of ``labels``, the task's lowercase label words).
    """

    name: str
    path: str
    domain: str
    answer: str
    labels: tuple[str, ...] = ()


def _math(name: str, folder: str) -> EvalSet:
    return EvalSet(name, f"dataset/{folder}/test.json", "math", "number")


def _labels(name: str, folder: str, *labels: str) -> EvalSet:
    return EvalSet(name, f"dataset/{folder}/test.json", "commonsense", "label", labels)


_ANSWERS5 = tuple(f"answer{i}" for i in range(1, 6))

EVAL_SETS: dict[str, EvalSet] = {
    s.name: s
    for s in (
        _math("gsm8k", "gsm8k"),
        _math("svamp", "SVAMP"),
        _math("addsub", "AddSub"),
        _math("multiarith", "MultiArith"),
        _math("singleeq", "SingleEq"),
        _math("mawps", "mawps"),
        EvalSet("aqua", "dataset/AQuA/test.json", "math", "choice", tuple("ABCDE")),
        EvalSet("mathqa", "dataset/mathqa/test.json", "math", "choice", tuple("ABCDE")),
        # The label words are the regular expressions commonsense_evaluate.py searched for, in its order.
        _labels("boolq", "boolq", "true", "false"),
        _labels("piqa", "piqa", "solution1", "solution2"),
        _labels("siqa", "social_i_qa", *_ANSWERS5),
        _labels("hellaswag", "hellaswag", "ending1", "ending2", "ending3", "ending4"),
        _labels("winogrande", "winogrande", "option1", "option2"),
        _labels("arc_e", "ARC-Easy", *_ANSWERS5),
        _labels("arc_c", "ARC-Challenge", *_ANSWERS5),
        _labels("obqa", "openbookqa", *_ANSWERS5),
    )
}


def _check_answer(answer: str, spec: EvalSet | None) -> str | None:
    """Why an answer does not fit the set's kind, or None when it does."""
    if spec is None:
        return None
    if spec.answer == "number":
        try:
            float(answer)
        except ValueError:
            return f"answer {answer!r} is not a number"
    elif answer not in spec.labels:
        return f"answer {answer!r} is not one of {'/'.join(spec.labels)}"
    return None


def validate_records(data: object, source: str, spec: EvalSet | None = None) -> list[Record]:
    """Check the LLM-Adapters record format (and, for an evaluation set, the kind of every answer)."""
    if not isinstance(data, list):
        raise DataError(f"{source}: expected a JSON list of records, found {type(data).__name__}")
    if not data:
        raise DataError(f"{source}: the file holds no records")
    for index, record in enumerate(data):
        where = f"{source}: record {index}"
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected an object, found {type(record).__name__}")
        for key in ("instruction", "output", "answer"):
            if key not in record:
                raise DataError(f"{where}: missing '{key}'")
            if not isinstance(record[key], str):
                raise DataError(f"{where}: '{key}' must be a string, found {type(record[key]).__name__}")
        if not record["instruction"].strip():
            raise DataError(f"{where}: empty 'instruction'")
        if record.get("input"):
            raise DataError(f"{where}: non-empty 'input' (the paper's prompts have no input section)")
        problem = _check_answer(record["answer"], spec)
        if problem:
            raise DataError(f"{where}: {problem}")
    return data


def eval_set(name: str) -> EvalSet:
    """The evaluation set of that name; any other name is a synthetic dataset's held-out split (numeric answers,
    scored by the last number, no file)."""
    return EVAL_SETS.get(name) or EvalSet(name, "", "math", "number")


def load_records(path: Path, spec: EvalSet | None = None) -> list[Record]:
    """Read and validate one dataset file."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path}: not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start})"
        ) from None
    return validate_records(data, str(path), spec)


def normalise(instruction: str) -> str:
    """Lower case with runs of whitespace collapsed: the text two copies of one question share."""
    return " ".join(instruction.lower().split())


def decontaminated(
    questions: Sequence[str], tests: Mapping[str, Sequence[Mapping[str, str]]]
) -> tuple[list[int], dict[str, int]]:
    """The indices of the training questions (instructions) that, after ``normalise``, are in none of the test sets,
    and how many records each set removed (a record in two sets counts for the first)."""
    owner: dict[str, str] = {}
    for name, records in tests.items():
        for record in records:
            owner.setdefault(normalise(record["instruction"]), name)
    kept, dropped = [], dict.fromkeys(tests, 0)
    for index, question in enumerate(questions):
        name = owner.get(normalise(question))
        if name is None:
            kept.append(index)
        else:
            dropped[name] += 1
    return kept, dropped


def overlap(questions: Iterable[str], test: Sequence[Mapping[str, str]]) -> dict[str, float]:
    """How many test questions appear verbatim (after ``normalise``) among the training questions (instructions)."""
    seen = {normalise(q) for q in questions}
    shared = sum(normalise(r["instruction"]) in seen for r in test)
    return {"overlap": shared, "n": len(test), "percent": 100.0 * shared / len(test) if test else 0.0}
