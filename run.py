"""Entry point: ``python run.py [overrides]`` runs one job, ``python run.py -m ...`` a sweep (see README)."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from llm_adapters import experiment
from llm_adapters.config import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    group = cfg.logger.get("group")
    if group is None and hydra_cfg.mode == RunMode.MULTIRUN:
        sweep_dir = Path(hydra_cfg.sweep.dir)
        group = f"{sweep_dir.parent.name}/{sweep_dir.name}"
    results = experiment.run(cfg, job_dir, group)
    print(experiment.summary(results, job_dir))


if __name__ == "__main__":
    main()
