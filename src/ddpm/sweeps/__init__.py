"""Hyper-parameter sweeps: Hydra's Optuna sweeper made resumable (``hparams_search=optuna``) and the
summary every multirun writes into its sweep directory (``summary``, through the Hydra callback in
``callback``)."""
