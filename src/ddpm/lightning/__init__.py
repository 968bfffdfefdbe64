"""Lightning glue: the training module and checkpoint loading."""

from ddpm.lightning.module import DDPMLitModule

__all__ = ["DDPMLitModule"]
