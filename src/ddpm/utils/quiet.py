"""Third-party lines a user of the entry points cannot act on, silenced here and nowhere else.

Each filter names one line and why nobody can act on it; everything else (Lightning's warnings about a
real misconfiguration, our own lines) still shows. :func:`quiet_third_party` is called by every entry
point (:mod:`ddpm.cli.task_wrapper`), also in each job process of a sweep; calling it again is harmless.
"""

from __future__ import annotations

import logging
import warnings

# warnings.filterwarnings(message=...) patterns (matched at the start of the message)
IGNORED_WARNINGS: tuple[str, ...] = (
    # torch >= 2.10 deprecates LeafSpec, which Lightning's own utilities/_pytree.py still uses
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # Lightning compares the batches of one epoch with log_every_n_steps, but it logs every
    # log_every_n_steps optimizer steps counted across epochs (all our runs are step-based)
    r"The number of training batches \(\d+\) is smaller than the logging interval",
)
# the start of Lightning's rank-zero info lines that are an advertisement, not about this run
IGNORED_LOG_PREFIXES: tuple[str, ...] = ("💡 Tip: For seamless cloud logging",)
# the loggers Lightning's rank_zero_info / rank_zero_warn write through (fabric's and pytorch's)
LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
# loggers kept to their warnings: SQLAlchemy's migration tool, imported with Optuna's sweeper, logs a
# "setup plugin ..." line per plugin on import and two lines whenever a study database is opened
WARNINGS_ONLY = ("alembic",)


class _DropPrefixes(logging.Filter):
    """Drops records whose message starts with one of :data:`IGNORED_LOG_PREFIXES`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(IGNORED_LOG_PREFIXES)


def quiet_third_party() -> None:
    """Install the warning filters, the Lightning log filter and the log levels (before the libraries log:
    the entry points call it first)."""
    for pattern in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropPrefixes) for f in logger.filters):
            logger.addFilter(_DropPrefixes())
    for name in WARNINGS_ONLY:
        logging.getLogger(name).setLevel(logging.WARNING)


__all__ = ["IGNORED_LOG_PREFIXES", "IGNORED_WARNINGS", "quiet_third_party"]
