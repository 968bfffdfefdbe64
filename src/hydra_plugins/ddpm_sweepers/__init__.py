"""ddpm's Hydra plugins. Hydra instantiates sweepers only from the ``hydra_plugins`` namespace package and
imports every module in it at each start-up, so this module stays light: the work is in ``ddpm.sweeps``."""

from __future__ import annotations

from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper


class ResumableOptunaSweeper(OptunaSweeper):
    """Hydra's Optuna sweeper whose re-runs finish an interrupted study (``ddpm.sweeps.optuna_sweeper``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from ddpm.sweeps.optuna_sweeper import ResumableOptunaSweeperImpl

        self.sweeper = ResumableOptunaSweeperImpl(**kwargs)
