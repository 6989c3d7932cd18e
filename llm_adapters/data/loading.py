"""The data phase of a job: where its files are, their records read and validated (through ``datasets``) before
any model loads, decontamination when asked, and the contamination report."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from llm_adapters.data import arrow_cache, synthetic_math
from llm_adapters.data.checksums import Fingerprint, fingerprint
from llm_adapters.data.download import locate
from llm_adapters.data.options import ANSWER_FORMATS, as_cloze, as_text
from llm_adapters.data.sets import EVAL_SETS, EvalSet, Record, decontaminated, eval_set, overlap
from llm_adapters.errors import ConfigError

if TYPE_CHECKING:
    from datasets import Dataset

log = logging.getLogger(__name__)

EvalSets = dict[str, tuple[EvalSet, list[Record]]]


@dataclass
class Data:
    """The training records (an Arrow table; None when the job trains on nothing), what identifies exactly those
    records (the file's SHA-256 or the generator's settings, and every selection made from them: the tokenized
    cache's key), and each whole evaluation set."""

    train: Dataset | None
    train_id: str
    eval_sets: EvalSets

    def questions(self) -> list[str]:
        """The training records' instructions (the contamination report and decontamination compare these)."""
        return [] if self.train is None else self.train.with_format("arrow")["instruction"].to_pylist()

    def select(self, indices: Sequence[int], why: str) -> Data:
        """The data with only these training records (a view of the same table), identified as such."""
        assert self.train is not None
        kept = self.train.select(indices)
        return Data(kept, arrow_cache.digest(self.train_id, why, list(map(int, indices))), self.eval_sets)


def check_config(cfg: DictConfig) -> None:
    """In milliseconds, before anything is read: a training source that exists, and evaluation sets that ``sets``
    knows (or the synthetic set's held-out split); one line naming the key."""
    d = cfg.dataset
    if d.source not in ("synthetic", "file", "hub"):
        raise ConfigError(f"dataset.source must be 'synthetic', 'file' or 'hub' (got '{d.source}')")
    if d.source == "hub" and not d.get("hub"):
        raise ConfigError("dataset.hub: name the hub dataset (or a local dataset directory) to train on")
    if d.source == "file" and not isinstance(d.get("path"), str):
        if not d.get("path") or not all(isinstance(part, str) for part in d.path):
            raise ConfigError(f"dataset.path: a file, or a list of files to mix (got {d.get('path')})")
        if not isinstance(d.get("mixture_seed"), int):
            raise ConfigError("dataset.mixture_seed: a mixture (a list of dataset.path files) needs an integer seed")
    if d.get("answer_format", "label") not in ANSWER_FORMATS:
        raise ConfigError(f"dataset.answer_format must be one of {', '.join(ANSWER_FORMATS)} (got '{d.answer_format}')")
    held_out = [d.name] if d.source == "synthetic" else []
    if unknown := [name for name in cfg.eval.datasets if name not in EVAL_SETS and name not in held_out]:
        raise ConfigError(
            f"eval.datasets: unknown evaluation set(s) {unknown} (known: {', '.join([*held_out, *EVAL_SETS])})"
        )


def data_files(cfg: DictConfig) -> dict[str, Path]:
    """Where each data file the job reads is, found (or fetched) before anything else: the training file (mode=train
    on a file dataset, key ``train``) and each evaluation set's file (the synthetic data has none)."""
    p = cfg.paths
    wanted = {name: eval_set(name).path for name in cfg.eval.datasets if name in EVAL_SETS}
    if cfg.dataset.source == "file" and cfg.mode == "train":
        wanted = {**{name: path for name, path in train_parts(cfg)}, **wanted}
    located = {name: locate(path, p.data_dir, p.data_url, p.data_hub, p.data_cache) for name, path in wanted.items()}
    if cfg.dataset.source == "hub" and cfg.mode == "train":
        located = {"train": arrow_cache.from_hub(cfg.dataset, cache(cfg)), **located}
    return located


def train_parts(cfg: DictConfig) -> list[tuple[str, str]]:
    """The training file(s) of a dataset, each under its key: ``train`` for one file (a hub dataset's export
    included); for a mixture (a list of paths) ``train:<path>`` each, in the listed order."""
    path = cfg.dataset.get("path")
    if cfg.dataset.source != "file" or isinstance(path, str):
        return [("train", path)]
    return [(f"train:{part}", part) for part in path]


def _read_train(cfg: DictConfig, located: dict[str, Path], digests: Fingerprint, where: Path) -> Data:
    """The training records of a file dataset. A mixture is the listed files concatenated and shuffled once with
    ``dataset.mixture_seed`` (the same order for every job, whatever its seed), so that ``train.max_examples`` takes
    a sample of the mixture rather than the head of its first file; its id names every file's digest and the seed."""
    from datasets import concatenate_datasets

    keys = [key for key, _ in train_parts(cfg)]
    parts = [(located[key], digests[key]["sha256"]) for key in keys]
    if keys == ["train"]:
        return Data(arrow_cache.read(*parts[0], None, where), parts[0][1], {})
    tables = [arrow_cache.read(path, sha, None, where) for path, sha in parts]
    seed = cfg.dataset.mixture_seed
    mixed = concatenate_datasets(tables).shuffle(seed=seed).flatten_indices()
    return Data(mixed, arrow_cache.digest("mixture", [sha for _, sha in parts], seed), {})


def _with_text_answers(data: Data, name: str, answer_format: str) -> Data:
    """``dataset.answer_format=text`` or ``cloze``: every training response names its gold option's text (cloze:
    and the instruction leaves the options out; ``data.options``), every record checked before any model loads;
    identified as such, so the tokenized cache never mixes the formats."""
    from datasets import Dataset

    rewrite = as_text if answer_format == "text" else as_cloze
    records = [rewrite(f"dataset {name}", record, i) for i, record in enumerate(data.train.to_list())]
    key = arrow_cache.digest(data.train_id, f"answer_format={answer_format}")
    return Data(Dataset.from_list(records), key, data.eval_sets)


def cache(cfg: DictConfig) -> Path:
    """Where the Arrow tables of the data files and the tokenized training sets are kept."""
    return Path(cfg.paths.data_cache).expanduser() / "arrow"


def load_data(cfg: DictConfig, located: dict[str, Path] | None = None, digests: Fingerprint | None = None) -> Data:
    """The training records and each whole evaluation set, all read (through ``datasets``) and validated before any
    model loads (``located``: ``data_files(cfg)``, ``digests``: their ``fingerprint``, when already known)."""
    from datasets import Dataset

    located = data_files(cfg) if located is None else located
    digests = fingerprint(located) if digests is None else digests
    where, held_out = cache(cfg), []
    data = Data(None, "", {})
    if cfg.dataset.source == "synthetic":
        d = cfg.dataset
        records, held_out = synthetic_math.generate(d.train_size, d.test_size, d.seed, d.two_step_fraction)
        data.train = Dataset.from_list(records)
        data.train_id = arrow_cache.digest("synthetic", d.train_size, d.test_size, d.seed, d.two_step_fraction)
    elif cfg.mode == "train":  # evaluating a saved adapter needs no training file
        data = _read_train(cfg, located, digests, where)
        if (answer_format := cfg.dataset.get("answer_format", "label")) != "label":
            data = _with_text_answers(data, cfg.dataset.name, answer_format)
        if cfg.train.max_examples and cfg.train.max_examples < data.train.num_rows:
            data = data.select(range(cfg.train.max_examples), "first")
    if data.train is not None and cfg.train.val_set_size >= data.train.num_rows:
        synthetic_split = cfg.dataset.source == "synthetic"
        files_read = ", ".join(str(located[key]) for key, _ in train_parts(cfg)) if not synthetic_split else ""
        source = "the synthetic training split (dataset.train_size)" if synthetic_split else files_read
        raise ConfigError(
            f"train.val_set_size {cfg.train.val_set_size} leaves nothing to train on "
            f"({data.train.num_rows} records in {source})"
        )
    for name in cfg.eval.datasets:
        spec = eval_set(name)  # a name that is not a file's is the synthetic data's held-out split (validated)
        if name in EVAL_SETS:
            records = arrow_cache.read(located[name], digests[name]["sha256"], spec, where).to_list()
        else:
            records = held_out
        data.eval_sets[name] = (spec, records)
    return data


def decontaminate(data: Data) -> tuple[Data, dict[str, int]]:
    """``dataset.decontaminate``: the data without the training records whose question is in an evaluated set, and
    how many each set removed. A job that trains nothing (``mode=eval``) has nothing to remove: its data as it is."""
    if data.train is None:
        return data, {}
    kept, dropped = decontaminated(data.questions(), {name: records for name, (_, records) in data.eval_sets.items()})
    log.warning("dataset.decontaminate: %d training records dropped (%s)", sum(dropped.values()), dropped)
    return data.select(kept, "decontaminated"), dropped


def contamination(data: Data, train_name: str) -> dict[str, dict[str, Any]]:
    """Per evaluation set, how many of its questions are also in the training set (a warning above 1%)."""
    questions = data.questions()
    found = {name: overlap(questions, records) for name, (_, records) in data.eval_sets.items() if questions}
    for name, counts in found.items():
        if counts["percent"] > 1.0:
            log.warning(
                "%s: %d of %d test questions (%.1f%%) also appear in the training set %s",
                *(name, counts["overlap"], counts["n"], counts["percent"], train_name),
            )
    return found
