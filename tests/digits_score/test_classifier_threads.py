"""The digits classifier is the same net whatever the thread count (a job and its srun tasks agree)."""

from __future__ import annotations

import torch

from ddpm.digits_score.classifier import digit_splits, train_classifier


def test_the_classifier_trains_to_the_same_weights_on_one_and_two_threads():
    train_x, train_y, _, _ = digit_splits()
    threads, nets = torch.get_num_threads(), []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            nets.append(train_classifier(train_x[:256], train_y[:256], epochs=2).state_dict())
            assert torch.get_num_threads() == n  # given back as it was
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(nets[0][k], nets[1][k]) for k in nets[0])
