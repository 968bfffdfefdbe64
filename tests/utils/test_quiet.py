"""The third-party lines silenced by every entry point (ddpm.utils.quiet), and only those."""

import logging
import warnings

from lightning.pytorch.utilities.rank_zero import rank_zero_info

from ddpm.utils.quiet import quiet_third_party


def test_the_litlogger_tip_and_the_known_warnings_are_dropped_others_kept(caplog):
    quiet_third_party()
    quiet_third_party()  # again (a sweep's job process): still one filter
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero"):
        rank_zero_info("💡 Tip: For seamless cloud logging and experiment tracking, try [litlogger]")
        rank_zero_info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        quiet_third_party()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1)
        few = "The number of training batches (23) is smaller than the logging interval"
        warnings.warn(few, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["something else"]
