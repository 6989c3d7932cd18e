"""Entry point: ``python run.py [overrides]`` runs one job, ``python run.py -m ...`` a sweep (see README)."""

from __future__ import annotations

import difflib
import errno
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from llm_adapters import CONF_DIR
from llm_adapters.errors import InputError
from llm_adapters.files import yaml_keys
from llm_adapters.job import plan
from llm_adapters.job.composition import apply_study, register_resolvers
from llm_adapters.training.checkpoint import Preempted, requeue_under_submitit, sigterm_stops

register_resolvers()
log = logging.getLogger("run")

# Under torchrun, every process but rank 0 runs in a scratch directory with Hydra's logging off: the job's
# directory, results and logs are rank 0's alone.
if int(os.environ.get("RANK", "0")) > 0:
    sys.argv += [
        f"hydra.run.dir={tempfile.mkdtemp(prefix='llm-adapters-rank')}",
        "hydra.output_subdir=null",
        "hydra/job_logging=disabled",
        "hydra/hydra_logging=disabled",
    ]


def unknown_choice(arguments: list[str]) -> str | None:
    """The first ``group=option`` override (sweep lists included) naming an option conf/<group>/ does not have.

    Hydra would say so too, over several lines; this says it in one, before anything is composed.
    """
    for argument in arguments:
        group, _, value = argument.partition("=")
        if not value or group.startswith("hydra") or not (CONF_DIR / group).is_dir() or "(" in value:
            continue
        for option in value.split(","):
            if not (CONF_DIR / group / f"{option}.yaml").is_file():
                available = ", ".join(sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")))
                return f"{group}={option}: no such {group} (available: {available})"
    return None


def unknown_key(arguments: list[str]) -> str | None:
    """The first ``group.key=value`` override naming a key the chosen option of that group does not have (Hydra's
    five-line "Could not override"), said in one line with the closest key. Not checked under ``+sweep`` or
    ``+experiment``, which may add keys to a group."""
    if any(a.startswith(("+sweep", "+experiment")) for a in arguments):
        return None
    defaults = OmegaConf.load(CONF_DIR / "config.yaml").defaults
    chosen = {k: v for entry in defaults if isinstance(entry, DictConfig) for k, v in entry.items()}
    chosen |= {a.partition("=")[0]: a.partition("=")[2].split(",")[0] for a in arguments if "." not in a.split("=")[0]}
    for argument in arguments:
        path, _, value = argument.partition("=")
        group, _, key = path.partition(".")
        if not value or not key or group not in chosen or not (CONF_DIR / group / f"{chosen[group]}.yaml").is_file():
            continue
        keys = yaml_keys(CONF_DIR / group / f"{chosen[group]}.yaml")
        name = key.split(".")[0]
        if name not in keys:
            close = [k for k in keys if name.startswith(k) or k.startswith(name)] or difflib.get_close_matches(
                name, keys, 1
            )
            hint = f"did you mean {group}.{close[0]}?" if close else f"it has {', '.join(keys)}"
            return f"no key {group}.{name} in {group}={chosen[group]} ({hint})"
    return None


def unusable_directory(arguments: list[str]) -> str | None:
    """A ``hydra.run.dir``/``hydra.sweep.dir`` that is empty, names a file, or cannot be created (a folder this user
    cannot write, ``/proc``, a name too long for the file system): said in one line instead of Hydra's traceback
    when it tries to create it. The directory is created here, as Hydra would create it next."""
    for argument in arguments:
        key, _, value = argument.partition("=")
        if key not in ("hydra.run.dir", "hydra.sweep.dir") or "${" in value:
            continue
        if not value.strip():
            return f"{key} is empty: name a directory (an empty one would write the job into the current directory)"
        path = Path(value).expanduser().absolute()
        try:
            existing = next(p for p in [path, *path.parents] if p.exists())
            if not existing.is_dir():
                return f"{key}={value}: {existing} is a file, not a directory"
            if not os.access(existing, os.W_OK | os.X_OK):
                return f"{key}={value}: {existing} is not writable"
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            return f"{key}={value[:80]}{'...' if len(value) > 80 else ''}: cannot create it ({error.strerror})"
    return None


def misused_override(arguments: list[str]) -> str | None:
    """Two override mistakes Hydra reports over several lines: several values without ``-m`` (a sweep run as one
    job), and ``+key=value`` for a key the config already has (``+seed=1``)."""
    sweep = any(a in ("-m", "--multirun") for a in arguments)
    for argument in arguments:
        key, equals, value = argument.partition("=")
        if not equals or key.startswith(("hydra", "-")):
            continue
        if not sweep and re.search(r",(?![^\[{(]*[\]})])", value) and not value.startswith(("'", '"')):
            return f"{argument} lists several values, a sweep: add -m (python run.py -m {argument} ...)"
        if key.startswith("+") and not key.startswith("++") and already_set(key[1:]):
            return f"{argument}: {key[1:]} is already in the config: write {key[1:]}={value} (without +)"
    return None


def unparsable(arguments: list[str]) -> str | None:
    """An override Hydra's grammar cannot read (a search space's unclosed ``interval(4``, a sweep function given the
    wrong types), which Hydra reports over three lines with exit 1."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for argument in (a for a in arguments if "=" in a and not a.startswith("-")):
        try:
            parser.parse_overrides([argument])
        except OverrideParseException as error:
            lines = [
                line for line in str(error).splitlines() if line and not line.startswith(("See ", "Error parsing"))
            ]
            return f"{argument}: {'; '.join(lines) or 'not an override'} (Hydra's override grammar)"
    return None


def already_set(key: str) -> bool:
    """Whether the composed default config already has ``key`` (top level, or a key of a group's default option)."""
    defaults = OmegaConf.load(CONF_DIR / "config.yaml")
    chosen = {k: v for entry in defaults.defaults if isinstance(entry, DictConfig) for k, v in entry.items()}
    group, _, name = key.partition(".")
    if not name:
        return group in defaults and group not in ("defaults", "hydra")
    option = CONF_DIR / group / f"{chosen.get(group)}.yaml"
    return group in chosen and option.is_file() and name.split(".")[0] in yaml_keys(option)


def budget_overrides(arguments: list[str]) -> list[str]:
    """The README's ``budget.trainable=N`` (``budget.<key>=...``) made to work as written, with or without a
    ``+budget=...`` preset: the budget group is not in the defaults, so each budget key is force-added (``++``); a
    count given without a fraction replaces the preset's fraction (exactly one of the two is allowed)."""
    out, keys = [], set()
    for argument in arguments:
        key = argument.partition("=")[0]
        if key.startswith("budget.") and "=" in argument:
            keys.add(key)
            argument = f"++{argument}"
        out.append(argument)
    if "budget.trainable" in keys and "budget.fraction" not in keys:
        out.append("++budget.fraction=null")
    return out


def to_log_file(line: str) -> None:
    """Put ``line`` in the job's run.log too (the console already has it once): the log of a job that stopped on bad
    input says why."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, line, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    sweep = hydra_cfg.mode == RunMode.MULTIRUN
    group = cfg.logger.get("group")
    if group is None and sweep:
        sweep_dir = Path(hydra_cfg.sweep.dir)
        group = f"{sweep_dir.parent.name}/{sweep_dir.name}"
    try:
        cfg = apply_study(cfg)
        if hydra_cfg.output_subdir is not None:  # what ran is what the job's saved config says
            OmegaConf.save(cfg, job_dir / hydra_cfg.output_subdir / "config.yaml")
        if cfg.mode == "plan":
            planned = plan.plan(cfg, job_dir, sweep)
            print(plan.line(planned) if planned else f"skipped: {plan.skip_reason(job_dir)}")
            return
        from llm_adapters.job import recipe  # training and evaluation only: plan mode starts faster without it

        with sigterm_stops():
            results = recipe.run(cfg, job_dir, group, sweep=sweep)
    except InputError as error:  # a mistake in the input: one line, not a traceback
        if sweep:  # recorded as failed in results.json; the other jobs go on
            log.error("job failed: %s", error)
            return
        print(f"error: {error}", file=sys.stderr)
        to_log_file(f"error: {error}")
        sys.exit(2)
    except Preempted as error:  # an expected stop, recorded and checkpointed: one line, and a sweep stops too
        log.error("stopped: %s", error)
        print(f"stopped: {error}; the same command continues from it", file=sys.stderr)
        requeue_under_submitit()  # under submitit: requeued now, and the rerun continues from the checkpoint
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C outside training (which checkpoints and stops as Preempted): no traceback
        print(
            f"interrupted: the job in {job_dir} stopped; its record says so, and the same command reruns it",
            file=sys.stderr,
        )
        sys.exit(130)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        line = f"error: no space left on the device of {error.filename or job_dir}; earlier checkpoints are kept"
        log.error("%s", line)  # a sweep stops too: the next job would meet the same full disk
        print(line, file=sys.stderr)
        sys.exit(1)
    except Exception:
        if sweep:
            log.exception("job failed (see results.json)")
            return
        raise
    if results["status"] == "ok":
        from llm_adapters.job.report import summary

        print(summary(results, job_dir))
    else:
        print(f"{results['status']}: {results['reason']}")


if __name__ == "__main__":
    sys.argv[1:] = arguments = budget_overrides(sys.argv[1:])
    checks = (unparsable, unknown_choice, misused_override, unknown_key, unusable_directory)
    if problem := next((found for check in checks if (found := check(arguments))), None):
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    main()
