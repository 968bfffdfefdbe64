"""The command line's ``labels=`` (``ddpm.cli.labels``): class labels and the model call's conditioning."""

from __future__ import annotations

import pytest
import torch

from ddpm.cli.labels import balanced_labels, label_cond, labels_for
from ddpm.diffusion.denoiser import LABELS_KEY
from ddpm.errors import ConfigError


def test_every_form_of_labels():
    assert labels_for(None, 5, 3) is None
    assert labels_for("balanced", 5, 3).tolist() == [0, 1, 2, 0, 1]
    assert labels_for(" Balanced ", 2, 3).tolist() == [0, 1]
    assert labels_for(2, 3, 3).tolist() == [2, 2, 2]
    assert labels_for("1", 2, 3).tolist() == [1, 1]
    assert labels_for([3, 7], 5, 10).tolist() == [3, 7, 3, 7, 3]
    assert labels_for([4], 3, 10).dtype == torch.long
    assert label_cond(None, 4, 3) == {}
    assert label_cond([1], 2, 3)[LABELS_KEY].tolist() == [1, 1]


def test_labels_errors_are_one_line_and_name_the_fix():
    cases = [
        ((None, 4, 3, 2.0), "needs class labels: add labels=balanced"),
        (("balanced", 4, 0), "model is unconditional"),
        (("cats", 4, 3), "a class index, a list of them or 'balanced'"),
        (([], 4, 3), "class indices in 0..2"),
        (([3], 4, 3), "class indices in 0..2"),
        (([-1], 4, 3), "class indices in 0..2"),
    ]
    for args, match in cases:
        with pytest.raises(ConfigError, match=match) as info:
            labels_for(*args)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="num_classes"):
        balanced_labels(4, 0)
