"""Hyper-parameter sweeps: Hydra's Optuna sweeper made resumable (``hparams_search=optuna``)."""
