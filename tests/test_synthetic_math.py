"""The built-in data: deterministic, in the LLM-Adapters record format, arithmetically right, splits disjoint."""

import re

from llm_adapters.data.synthetic_math import generate


def test_same_seed_same_records_and_other_seed_differs():
    assert generate(50, 10, seed=3) == generate(50, 10, seed=3)
    assert generate(50, 10, seed=3) != generate(50, 10, seed=4)


def test_record_format_and_arithmetic():
    train, test = generate(400, 50, seed=0)
    two_step = 0
    for record in train + test:
        assert set(record) == {"instruction", "input", "output", "answer"}
        assert record["input"] == ""
        assert record["output"].startswith("\nA: ")
        match = re.search(r"The answer is (-?\d+)\.$", record["output"])
        assert match and match.group(1) == record["answer"]
        equations = re.findall(r"(\d+) ([-+*/]) (\d+) = (\d+)", record["output"])
        assert equations
        for a, op, b, c in equations:
            assert eval(f"{a} {op} {b}") == int(c)  # each rationale step is true
        assert int(equations[-1][3]) == int(record["answer"])
        two_step += len(equations) == 2
    assert 0.15 < two_step / 450 < 0.45  # one- and two-step problems both present


def test_splits_are_disjoint_and_unique():
    train, test = generate(500, 100, seed=1)
    train_q = [r["instruction"] for r in train]
    test_q = [r["instruction"] for r in test]
    assert len(set(train_q)) == 500 and len(set(test_q)) == 100
    assert not set(train_q) & set(test_q)
