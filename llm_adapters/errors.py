"""One taxonomy for bad input: every mistake a user can make in a config, a data file, a saved adapter, a
checkpoint or a model source is an ``InputError``, which ``run.py`` turns into one line and exit code 2 (a sweep
records it and goes on). Each kind keeps its own class, so a caller can tell them apart."""

from __future__ import annotations

import argparse
import difflib
import sys


class InputError(ValueError):
    """Something the user gave that cannot be used; the message names it (key, file, record) in one line."""


class ConfigError(InputError):
    """A config that cannot run; the message names the key."""


class DataError(InputError):
    """A dataset file or record that cannot be used; the message names the file and the record."""


class PlacementError(InputError):
    """A placement that has no meaning for this adapter or this model."""


class BudgetError(PlacementError):
    """A parameter budget (``+budget=...``) no size of this adapter kind reaches on this model and placement: as a
    placement without meaning, a skipped job in a sweep."""


class AdapterFileError(InputError):
    """A saved adapter (``adapter_path``) that cannot be loaded onto this model."""


class CheckpointError(InputError):
    """A checkpoint that cannot be read back; the message names it."""


class WeightsError(InputError):
    """Model weights that cannot be fetched, verified or converted; the message names the source."""


class DivergedError(InputError, FloatingPointError):
    """Training reached a non-finite loss: the settings (most often ``train.lr``) or the data cannot be trained on."""


def did_you_mean(name: str, keys: list[str], prefix: str = "") -> str:
    """ " (did you mean <prefix><closest key>?)", or nothing when no key is close: the hint of every unknown-key
    message."""
    close = [k for k in keys if name.startswith(k) or k.startswith(name)] or difflib.get_close_matches(name, keys, 1)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser, saying a command line's mistake in one line (``error: ...``, exit 2) rather than with
    its usage block, as every other bad input is said."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (--help for the usage)", file=sys.stderr)
        sys.exit(2)
