"""The FID/IS stage's scores: named by the one naming function, switched by the settings."""

import dataclasses

import pytest
import torch

from ddpm.errors import ConfigError
from ddpm.evaluation.fid_is import FIDSettings, feature_scores, inception_scores
from ddpm.metrics.kid_pr import precision_recall
from ddpm.metrics.statistics import InceptionStatistics
from tests.metrics.test_kid_pr import feature_sets, tf_kid


def test_feature_scores_names_and_switches():
    a, b = feature_sets(n_1=40, n_2=30)
    settings = FIDSettings(kid=True, precision_recall=True, kid_subsets=4, kid_subset_size=20)
    scores = feature_scores({"inception": a}, {"inception": b}, settings, num=40, split="train")
    assert set(scores) == {"kid_40_train", "kid_40_train_std"} | {
        "precision_inception_40_train",
        "recall_inception_40_train",
    }  # precision/recall name their feature space
    assert scores["kid_40_train"] == pytest.approx(tf_kid(a, b, 4, 20)[0], rel=1e-5)
    assert feature_scores({"inception": a}, {"inception": b}, FIDSettings(), num=40, split="train") == {}
    tagged = feature_scores({"inception": a}, {"inception": b}, settings, num=40, split="test", tag="ddim50")
    assert set(tagged) == {"kid_40_ddim50_test", "kid_40_ddim50_test_std"} | {
        "precision_inception_40_ddim50_test",
        "recall_inception_40_ddim50_test",
    }


def test_precision_recall_in_vgg16_space_reads_the_vgg16_features():
    a, b = feature_sets(n_1=40, n_2=30)
    c, d = feature_sets(n_1=40, n_2=30, dim=12, seed=1)
    settings = FIDSettings(kid=True, precision_recall=True, pr_features="vgg16", kid_subsets=4)
    assert settings.needs_features and settings.needs_vgg16  # KID stays in Inception space
    assert settings.pr_feature_space == "vgg16_fc2_relu"
    generated, real = {"inception": a, "vgg16": c}, {"inception": b, "vgg16": d}
    scores = feature_scores(generated, real, settings, num=40, split="train")
    assert set(scores) == {
        "kid_40_train",
        "kid_40_train_std",
        "precision_vgg16_40_train",
        "recall_vgg16_40_train",
    }
    assert (scores["precision_vgg16_40_train"], scores["recall_vgg16_40_train"]) == precision_recall(c, d)
    pr_only = dataclasses.replace(settings, kid=False)
    assert not pr_only.needs_features  # no Inception features kept for precision/recall in VGG-16 space
    with pytest.raises(ConfigError, match="pr_features='clip'"):
        FIDSettings(pr_features="clip")


def test_inception_scores_names():
    stats = InceptionStatistics(20, (10, 1), 2020, feature_dim=3, num_classes=5)
    stats.update(torch.randn(20, 3), torch.randn(20, 5), torch.arange(20))
    scores = inception_scores(stats, 50000)
    assert list(scores) == ["is_50k_10splits", "is_50k_10splits_std", "is_50k_1split"]
    assert scores["is_50k_10splits"] == stats.inception_score(10)[0]
    in_loop = inception_scores(stats, 10000, tag="ddim50", std=False)
    assert list(in_loop) == ["is_10k_ddim50_10splits", "is_10k_ddim50_1split"]
    real = inception_scores(stats, None, "train", std=False)  # the Inception check's real-data names
    assert list(real) == ["is_train_10splits", "is_train_1split"]
