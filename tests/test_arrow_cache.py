"""The data pipeline on ``datasets``: the cached and uncached tokenization give exactly the examples (and batches) of
the per-record code they replaced, on real records of every set; a later job reuses the cache; a damaged cache entry
is rebuilt; a file is validated once per content, with the same one-line errors; the cache key follows what decides
the examples and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.data_prep import per_record
from llm_adapters import files
from llm_adapters.data import arrow_cache
from llm_adapters.data.builtin_tokenizer import build_tokenizer
from llm_adapters.data.sets import EVAL_SETS, load_records
from llm_adapters.data.training_examples import Examples, collate, tokenize_for_training
from llm_adapters.errors import DataError
from llm_adapters.job.recipe import run
from tests.helpers.configs import FAST, QUICK, make_config

SAMPLE = 64  # records of each file compared example by example
SETTINGS = [(True, 256), (False, 64)]  # (train_on_inputs, cutoff_len): the paper's, and one that truncates


def _files(shared: Path) -> list[tuple[Path, object]]:
    found = [(shared / s.path, s) for s in EVAL_SETS.values() if (shared / s.path).is_file()]
    return [*found, (shared / "ft-training_set" / "math_data.json", None)]


def _cached(path: Path, spec, tokenizer, train_on_inputs: bool, cutoff: int, cache: Path) -> Examples:
    sha = files.sha256(path)
    table = arrow_cache.read(path, sha, spec, cache).select(range(SAMPLE))
    train = {"cutoff_len": cutoff, "train_on_inputs": train_on_inputs}
    return arrow_cache.tokenized(
        table, arrow_cache.digest(sha, "first", SAMPLE), tokenizer, train, {"name": "paper"}, cache
    )


def _same_as_per_record(tokenizer, shared: Path, cache: Path) -> None:
    for path, spec in _files(shared):
        records = load_records(path, spec)[:SAMPLE]
        for train_on_inputs, cutoff in SETTINGS:
            reference = per_record(records, tokenizer, cutoff, train_on_inputs)
            uncached = tokenize_for_training(records, tokenizer, cutoff, train_on_inputs)
            built = _cached(path, spec, tokenizer, train_on_inputs, cutoff, cache)
            reused = _cached(path, spec, tokenizer, train_on_inputs, cutoff, cache)
            for examples in (uncached, built, reused):
                assert list(examples) == reference, (path, train_on_inputs, cutoff)
                assert examples.lengths() == [len(e["input_ids"]) for e in reference]
                batch, expected = collate(examples.rows([5, 0, 7]), 0), collate([reference[i] for i in (5, 0, 7)], 0)
                assert all(batch[k].equal(expected[k]) for k in expected)
    assert any(-100 in e["labels"] for e in reference) and any(len(e["input_ids"]) == 64 for e in reference)


def test_every_path_gives_the_per_record_examples(shared_data, tmp_path):
    _same_as_per_record(build_tokenizer(), shared_data, tmp_path)


@pytest.mark.slow
def test_every_path_gives_the_per_record_examples_with_smollm2s_tokenizer(shared_data, smollm2, tmp_path):
    from transformers import AutoTokenizer

    _same_as_per_record(AutoTokenizer.from_pretrained(smollm2), shared_data, tmp_path)


def test_a_later_job_reuses_the_tokenized_cache(tmp_path, monkeypatch):
    calls = []
    real_map = arrow_cache.map_tokens
    monkeypatch.setattr(arrow_cache, "map_tokens", lambda *a, **k: calls.append(1) or real_map(*a, **k))
    cache = f"paths.data_cache={tmp_path / 'cache'}"
    run(make_config(*FAST, cache), tmp_path / "a")
    run(make_config(*FAST, cache, "seed=7", "adapter=series"), tmp_path / "b")  # another job of the same sweep
    assert len(calls) == 1
    assert len(list((tmp_path / "cache" / "arrow" / "tokenized").iterdir())) == 1
    run(make_config(*FAST, cache, "train.cutoff_len=64"), tmp_path / "c")  # other examples: tokenized again
    assert len(calls) == 2


def test_a_damaged_cache_entry_is_rebuilt_never_trusted(tmp_path, monkeypatch):
    records = [{"instruction": f"What is {i} plus 1?", "output": f"{i + 1}", "answer": f"{i + 1}"} for i in range(40)]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(records))
    sha, tokenizer, train = files.sha256(path), build_tokenizer(), {"cutoff_len": 64, "train_on_inputs": True}
    reference = per_record(records, tokenizer, 64, True)

    def prepared() -> Examples:
        return arrow_cache.tokenized(arrow_cache.read(path, sha, None, tmp_path), sha, tokenizer, train, {}, tmp_path)

    assert list(prepared()) == reference
    (entry,) = (tmp_path / "tokenized").iterdir()
    tokens = entry / "tokens.arrow"
    data = bytearray(tokens.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the token ids
    tokens.write_bytes(bytes(data))
    real_map, calls = arrow_cache.map_tokens, []
    monkeypatch.setattr(arrow_cache, "map_tokens", lambda *a, **k: calls.append(1) or real_map(*a, **k))
    assert list(prepared()) == reference and calls == [1]
    (entry / "manifest.json").write_text("{")  # an unreadable manifest: rebuilt too
    assert list(prepared()) == reference and calls == [1, 1]
    (table,) = (tmp_path / "records").rglob("*.arrow")
    table.write_bytes(table.read_bytes()[:-100])  # the records' own table cut short
    assert (
        arrow_cache.read(path, sha, None, tmp_path).select_columns(["instruction", "output", "answer"]).to_list()
        == records
    )


def test_a_file_is_validated_once_per_content_with_the_one_line_errors(tmp_path, monkeypatch):
    path = tmp_path / "train.json"
    path.write_text(json.dumps([{"instruction": "q", "output": "o", "answer": "1"}, {"instruction": "q2"}]))
    with pytest.raises(DataError, match=r"train.json: record 1: missing 'output'"):
        arrow_cache.read(path, files.sha256(path), None, tmp_path)
    path.write_text(json.dumps([{"instruction": "q", "output": "o", "answer": "1"}]))
    sha = files.sha256(path)
    assert arrow_cache.read(path, sha, None, tmp_path).num_rows == 1

    def validated_again(*args):
        raise RuntimeError("validated again")

    monkeypatch.setattr(arrow_cache, "load_records", validated_again)
    assert arrow_cache.read(path, sha, None, tmp_path).num_rows == 1  # the same contents: the verdict stands
    spec = EVAL_SETS["gsm8k"]
    with pytest.raises(RuntimeError, match="validated again"):  # as an evaluation set it is checked on its own
        arrow_cache.read(path, sha, spec, tmp_path)


def test_the_key_follows_what_decides_the_examples():
    tokenizer, train = build_tokenizer(), {"cutoff_len": 256, "train_on_inputs": True}
    key = arrow_cache.cache_key("records", tokenizer, train, {"name": "paper"})
    tokenizer(["some text"], truncation=True, max_length=7)  # a call leaves truncation state in the tokenizer
    assert arrow_cache.cache_key("records", tokenizer, train, {"name": "paper"}) == key
    assert arrow_cache.cache_key("records", build_tokenizer(), train, {"name": "paper"}) == key  # built again: same
    others = [
        arrow_cache.cache_key("other records", tokenizer, train, {"name": "paper"}),
        arrow_cache.cache_key("records", build_tokenizer(256), train, {"name": "paper"}),
        arrow_cache.cache_key("records", tokenizer, {**train, "cutoff_len": 64}, {"name": "paper"}),
        arrow_cache.cache_key("records", tokenizer, {**train, "train_on_inputs": False}, {"name": "paper"}),
        arrow_cache.cache_key("records", tokenizer, train, {"name": "fixed"}),
    ]
    assert len({key, *others}) == 6


def test_examples_read_rows_and_views_of_one_table():
    records = [{"instruction": "x" * (i + 1), "output": "y", "answer": "1"} for i in range(10)]
    examples = tokenize_for_training(records, build_tokenizer(), 256, True)
    view = examples.select([7, 2, 9])
    assert view.rows([0, 2]) == [examples[7], examples[9]] and view[-1] == examples[9]
    assert view.lengths() == [examples.lengths()[i] for i in (7, 2, 9)] and len(set(examples.lengths())) > 1
    assert examples[1:3] == [examples[1], examples[2]]
    with pytest.raises(IndexError):
        view[3]


def _hub_copy(tmp_path: Path, rows: list[dict]) -> Path:
    """A dataset directory ``load_dataset`` reads exactly as it reads a hub dataset by name (no hub here)."""
    folder = tmp_path / "hub-copy"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


MAPPING = "dataset.columns={instruction: question, output: solution, answer: label}"


def test_a_hub_dataset_by_name_trains_through_its_column_mapping(tmp_path, shared_data):
    rows = [
        {"question": f"What is {i} plus 2?", "solution": f"The answer is {i + 2}.", "label": str(i + 2)}
        for i in range(64)
    ]
    folder = _hub_copy(tmp_path, rows)
    common = [*QUICK, "dataset=hub", f"dataset.hub={folder}", MAPPING, f"paths.data_cache={tmp_path / 'cache'}"]
    common += [f"paths.data_dir={shared_data}", "eval.datasets=[addsub]", "eval.max_samples=2"]
    first = run(make_config(*common), tmp_path / "a")
    assert first["status"] == "ok" and first["train"]["examples"] == 64
    (export,) = (tmp_path / "cache" / "arrow" / "hub").glob("*.json")
    expected = [{"instruction": r["question"], "output": r["solution"], "answer": r["label"]} for r in rows]
    assert json.loads(export.read_text()) == expected
    assert first["data"]["train"]["sha256"] == files.sha256(export)  # the data the config hash names
    written = export.stat().st_mtime_ns
    second = run(make_config(*common, "seed=7"), tmp_path / "b")
    assert second["status"] == "ok" and export.stat().st_mtime_ns == written  # written once
    assert second["data"] == first["data"]


def test_a_hub_dataset_that_does_not_fit_is_one_line(tmp_path):
    rows = [{"question": "q", "solution": "s", "label": 1}, {"question": "q2", "solution": "s", "label": 2}]
    folder = _hub_copy(tmp_path, rows)
    dataset = {
        "hub": str(folder),
        "split": "train",
        "columns": {"instruction": "prompt", "output": "solution", "answer": "label"},
    }
    with pytest.raises(DataError, match=r"has no column 'prompt' \(dataset.columns; it has \['question', "):
        arrow_cache.from_hub(dataset, tmp_path / "cache")
    dataset["columns"]["instruction"] = "question"
    with pytest.raises(DataError, match=r"hub-copy \(split train\): record 0: 'answer' must be a string, found int"):
        arrow_cache.from_hub(dataset, tmp_path / "cache")
    with pytest.raises(DataError, match=r"hub-copy \(split test\) cannot be loaded: "):
        arrow_cache.from_hub({**dataset, "split": "test"}, tmp_path / "cache")


def test_a_mixture_is_every_listed_file_in_one_fixed_order_whatever_the_seed(tmp_path, shared_data):
    from llm_adapters.data import loading

    common = [f"paths.data_dir={shared_data}", f"paths.data_cache={tmp_path}", "dataset=commonsense_mix"]
    common += ["eval.datasets=[obqa]", "train.max_examples=400"]
    first = loading.load_data(make_config(*common, "seed=1"))
    again = loading.load_data(make_config(*common, "seed=2"))
    other = loading.load_data(make_config(*common, "dataset.mixture_seed=1"))
    assert first.questions() == again.questions() and first.train_id == again.train_id
    assert first.questions() != other.questions() and first.train_id != other.train_id
    sources = {}
    for part in make_config(*common).dataset.path:
        for record in json.loads((shared_data / part).read_text()):
            sources.setdefault(record["instruction"], part)
    drawn = [sources[q] for q in first.questions()]
    assert len(drawn) == 400 and len(set(drawn)) == 4  # a sample of all four files, not the head of the first
    whole = loading.load_data(make_config(*common, "train.max_examples=null"))
    assert whole.train.num_rows == 2251 + 1119 + 9427 + 4957


@pytest.mark.parametrize(
    ("override", "named"), [("dataset.path=[]", "dataset.path"), ("~dataset.mixture_seed", "dataset.mixture_seed")]
)
def test_a_mixture_without_files_or_seed_is_one_line(override, named):
    from llm_adapters.job.config import ConfigError, validate

    with pytest.raises(ConfigError, match=named):
        validate(make_config("dataset=commonsense_mix", override))


def test_a_hub_dataset_name_the_hub_cannot_answer_is_one_line_before_the_hub_client_retries(tmp_path, monkeypatch):
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("the hub client was asked"))
    dataset = {"hub": "org/name", "split": "train", "columns": {"instruction": "q", "output": "s", "answer": "a"}}
    with pytest.raises(
        DataError,
        match=r"^dataset.hub org/name \(split train\): not a local dataset directory, and "
        r"the hub \(127\.0\.0\.1\) cannot be reached .*; set HF_HUB_OFFLINE=1 to use the cache$",
    ):
        arrow_cache.from_hub(dataset, tmp_path / "cache")
