"""``hydra/sweeper=optuna_search``: the harness's Optuna search, on current Optuna (see ``optuna_search.py``)."""
