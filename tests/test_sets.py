"""The paper's files load and validate; bad files fail with one line naming file and record; contamination counts."""

import json

import pytest

from llm_adapters.data.sets import EVAL_SETS, DataError, load_records, overlap

# Record counts of the shared snapshot (its README); hellaswag's test file is not in the snapshot.
COUNTS = {
    "gsm8k": 1319,
    "svamp": 1000,
    "multiarith": 600,
    "singleeq": 508,
    "addsub": 395,
    "aqua": 254,
    "mawps": 238,
    "mathqa": 2985,
    "boolq": 3270,
    "piqa": 1838,
    "siqa": 1954,
    "winogrande": 1267,
    "arc_e": 2376,
    "arc_c": 1172,
    "obqa": 500,
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_every_shared_eval_set_loads_and_validates(shared_data, name):
    spec = EVAL_SETS[name]
    assert len(load_records(shared_data / spec.path, spec)) == COUNTS[name]


def test_missing_file_is_a_one_line_error(shared_data):
    with pytest.raises(DataError, match=r"hellaswag/test.json: no such file"):
        load_records(shared_data / EVAL_SETS["hellaswag"].path, EVAL_SETS["hellaswag"])


@pytest.mark.parametrize(
    ("content", "spec", "message"),
    [
        ("", None, r"not valid JSON \(Expecting value at line 1\)"),
        ("[]", None, "the file holds no records"),
        ('{"instruction": "x"}', None, "expected a JSON list of records, found dict"),
        (
            '[{"instruction": "q", "output": "o", "answer": "1"}, {"instruction": "q", "output": "o"}]',
            None,
            "record 1: missing 'answer'",
        ),
        ('[{"instruction": "q", "output": "o", "answer": 4}]', None, "record 0: 'answer' must be a string, found int"),
        ('[{"instruction": " ", "output": "o", "answer": "4"}]', None, "record 0: empty 'instruction'"),
        ('[{"instruction": "q", "input": "ctx", "output": "o", "answer": "4"}]', None, "record 0: non-empty 'input'"),
        ('[{"instruction": "q", "output": "o", "answer": "four"}]', "gsm8k", "record 0: answer 'four' is not a number"),
        (
            '[{"instruction": "q", "output": "o", "answer": "F"}]',
            "aqua",
            "record 0: answer 'F' is not one of A/B/C/D/E",
        ),
        ('[{"instruction": "q", "output": "o", "answer": "True"}]', "boolq", "answer 'True' is not one of true/false"),
    ],
)
def test_bad_files_name_file_and_record(tmp_path, content, spec, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as error:
        load_records(path, EVAL_SETS[spec] if spec else None)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


# Reference doc §9: math_data.json holds ~80% of every math test set (overlap by normalised instruction).
LEAKED = {"aqua": 203, "addsub": 316, "multiarith": 491, "singleeq": 406, "svamp": 800, "gsm8k": 1055, "mawps": 54}


def test_math_data_contamination_matches_the_reference(shared_data):
    train = json.loads((shared_data / "ft-training_set" / "math_data.json").read_text())
    for name, expected in LEAKED.items():
        test = load_records(shared_data / EVAL_SETS[name].path, EVAL_SETS[name])
        assert overlap([r["instruction"] for r in train], test)["overlap"] == expected, name


def test_overlap_normalises_case_and_whitespace():
    train = ["Tom has  3 apples.\n"]
    test = [{"instruction": "tom has 3 apples.\n "}, {"instruction": "Tom has 4 apples."}]
    assert overlap(train, test) == {"overlap": 1, "n": 2, "percent": 50.0}


def test_decontamination_drops_every_training_copy_of_a_test_question(shared_data):
    """math_data.json holds most of the math test sets; with dataset.decontaminate=true none of them is left, and the
    training records removed are exactly those holding a question the contamination report counts."""
    import dataclasses

    from llm_adapters.data.loading import decontaminate, load_data
    from llm_adapters.data.sets import normalise, overlap
    from tests.helpers.configs import make_config

    cfg = make_config(
        f"paths.data_dir={shared_data}",
        "dataset=math_data",
        "dataset.decontaminate=true",
        "eval.datasets=[addsub,aqua]",
    )
    data = load_data(cfg)
    questions = data.questions()
    before = {name: overlap(questions, records)["overlap"] for name, (_, records) in data.eval_sets.items()}
    clean, dropped = decontaminate(data)
    assert before == {"addsub": 316, "aqua": 203}  # the README's contamination figures
    tested = {normalise(r["instruction"]) for _, records in data.eval_sets.values() for r in records}
    leaked = [q for q in questions if normalise(q) in tested]
    assert sum(dropped.values()) == len(leaked) == len(questions) - len(clean.train)
    # the distinct questions removed are the report's overlaps, set by set (none of these two sets share one)
    assert len({normalise(q) for q in leaked}) == before["addsub"] + before["aqua"]
    assert sorted(clean.questions()) == sorted(q for q in questions if normalise(q) not in tested)
    assert all(overlap(clean.questions(), records)["overlap"] == 0 for _, records in clean.eval_sets.values())
    assert clean.train_id != data.train_id  # the tokenized cache cannot mistake one for the other
    evaluating = dataclasses.replace(data, train=None)  # mode=eval loads no training set: nothing to remove
    assert decontaminate(evaluating) == (evaluating, {})


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('[{"instruction": "caf\xe9", "output": "o", "answer": "1"}]'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.json: not UTF-8 text \(byte 0xe9 at offset 21\)"):
        load_records(path)
