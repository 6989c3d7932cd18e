"""A Hydra sweeper on current Optuna: ``python run.py -m hydra/sweeper=optuna_search ...``.

Hydra's own Optuna sweeper (1.3) pins ``optuna<3``, cannot prune and its SQLite storage fails under SQLAlchemy 2;
this one is written against Optuna 4+. The search space is the sweep's overrides in Hydra's sweep grammar, as
Hydra's Optuna sweeper reads it: ``adapter=choice(series,lora)`` (categorical), ``adapter.r=int(interval(4,64))``
(integers), ``train.lr=tag(log,interval(1e-5,1e-3))`` (log scale), ``range(...)`` (categorical over its values);
any other override is fixed for every trial. An ``adapter.<key>`` is suggested only for the kinds whose config has
that key (the kind is drawn first), so a size key belongs to its kind. Each trial is an ordinary job, launched
through the configured launcher in batches of ``n_jobs``; its value is read from its ``results.json``
(``llm_adapters.search``), and a failed or skipped job is told to Optuna as failed. The study lives in
``storage`` (default: ``optuna.db`` in the sweep directory): the same command continues it, and a trial an earlier,
killed run left running is told failed and its settings asked again (the harness then reuses or resumes its job).
"""

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from llm_adapters import search
from llm_adapters.errors import ConfigError
from llm_adapters.search import pruning
from llm_adapters.search.space import Space

log = logging.getLogger(__name__)


@dataclass
class OptunaSearchConf:
    _target_: str = "hydra_plugins.optuna_search.optuna_search.OptunaSearch"
    n_trials: int = 8
    n_jobs: int = 1  # trials per launch: the launcher's parallelism
    direction: Any = "maximize"  # one direction, or a list: one per objective
    objectives: Any = field(default_factory=lambda: ["accuracy"])  # what each trial reports (llm_adapters.search)
    storage: Any = None  # an RDB URL; None: sqlite in the sweep directory
    study_name: str = "search"
    seed: Any = 0  # the sampler's seed
    params: Any = None  # the search space in the sweep grammar, as hydra.sweeper.params of the basic sweeper
    pruner: Any = None  # {type: <a class in optuna.pruners>, its arguments}: trials stopped on validation loss


ConfigStore.instance().store(
    group="hydra/sweeper", name="optuna_search", node=OptunaSearchConf, provider="llm_adapters"
)


class OptunaSearch(Sweeper):
    """Asks Optuna for trials, runs each as a job, tells Optuna what the job's results.json says."""

    def __init__(self, **settings: Any) -> None:
        try:
            self.settings = search.Settings.from_mapping(settings)
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        try:
            self._sweep(arguments)
        except ConfigError as error:  # bad search settings: one line, exit 2, before (or instead of) any trial
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    def _sweep(self, arguments: list[str]) -> None:
        assert self.config is not None
        params = {str(k): str(v) for k, v in (self.settings.params or {}).items()}
        overrides = [*(f"{k}={v}" for k, v in params.items()), *arguments]
        space = Space.parse(OverridesParser.create().parse_overrides(overrides))
        search.check_objectives(self.settings, self.config, space)
        pruning.check(self.settings.pruner, int(self.config.train.val_set_size or 0))
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        study = search.open_study(self.settings, sweep_dir)
        while (left := self.settings.n_trials - search.finished(study)) > 0:
            trials = [search.ask(study) for _ in range(min(left, self.settings.n_jobs))]
            storage, name = search.storage_url(self.settings, sweep_dir), self.settings.study_name
            batch = [
                [*space.overrides(trial), *pruning.trial_overrides(self.settings.pruner, storage, name, trial)]
                for trial in trials
            ]
            # A job directory is named by its trial's number: a batch whose numbers another sweep sharing the
            # study interleaved is launched in runs of consecutive numbers.
            start = 0
            for end in range(1, len(trials) + 1):
                if end == len(trials) or trials[end].number != trials[end - 1].number + 1:
                    returns = self.launcher.launch(batch[start:end], initial_job_idx=trials[start].number)
                    for trial, job in zip(trials[start:end], returns, strict=True):
                        search.tell(study, trial, Path(job.hydra_cfg.hydra.runtime.output_dir), self.settings)
                    start = end
        search.report(study, self.settings)
