"""Metric names: one function writes every name with its protocol (count, sampler, split, detail)."""

from ddpm.diffusion import GaussianDiffusion
from ddpm.metrics.names import count_label, metric_name, protocol_tag, sampler_tag, scale_name, splits_label
from ddpm.sampling import AncestralSampler, DDIMSampler, with_guidance


def test_sampler_tag_names_non_paper_samplers():
    assert sampler_tag(AncestralSampler(GaussianDiffusion(num_timesteps=1000))) == ""
    assert sampler_tag(AncestralSampler(GaussianDiffusion(num_timesteps=100))) == "ancestral100"

    class DDIMSampler:
        num_steps = 50

    assert sampler_tag(DDIMSampler()) == "ddim50"


def test_the_protocol_tag_is_empty_for_the_papers_protocol_only():
    paper = GaussianDiffusion(var_type="fixed_large")
    full = AncestralSampler(paper)
    assert protocol_tag(full, var_type="fixed_large", paper_var_type="fixed_large") == ""
    assert protocol_tag(AncestralSampler(paper, steps=250)) == "ancestral250"  # respaced
    assert protocol_tag(DDIMSampler(paper, steps=50)) == "ddim50"
    assert protocol_tag(full, raw_weights=True) == "raw"
    assert protocol_tag(full, var_type="fixed_small", paper_var_type="fixed_large") == "fixedsmall"
    assert protocol_tag(full, var_type="fixed_small") == ""  # no paper variance to differ from
    guided = with_guidance(DDIMSampler(paper, steps=20), 3.0)
    assert protocol_tag(guided) == "ddim20_w3"  # the guided sampler is named by the one it guides
    assert protocol_tag(full, conditional=True) == "cond"


def test_count_labels():
    counts = (50000, 10000, 2500, 1000, 64, 1050)
    assert [count_label(n) for n in counts] == ["50k", "10k", "2.5k", "1k", "64", "1050"]


def test_every_metric_name_of_the_project():
    assert metric_name("fid", 50000, "train") == "fid_50k_train"  # the paper's Table 1
    assert metric_name("fid", 10000, "train", tag="ddim50") == "fid_10k_ddim50_train"  # in-loop
    assert metric_name("is", 50000, detail=splits_label(10)) == "is_50k_10splits"
    assert metric_name("is", 50000, detail=f"{splits_label(10)}_std") == "is_50k_10splits_std"
    assert metric_name("is", 64, tag="ancestral8", detail=splits_label(1)) == "is_64_ancestral8_1split"
    assert metric_name("kid", 6, "test", detail="std") == "kid_6_test_std"
    assert metric_name("precision", 50000, "train", features="vgg16") == "precision_vgg16_50k_train"
    assert (
        metric_name("recall", 6, "test", tag="cond", features="inception") == "recall_inception_6_cond_test"
    )
    assert metric_name("nll_bpd", split="test") == "nll_bpd_test"  # ddpm-eval (the paper's key)
    assert metric_name("nll_prior_bpd", 1000, "test") == "nll_prior_bpd_1k_test"  # in-loop
    assert metric_name("is", split="train", detail=splits_label(10)) == "is_train_10splits"  # the check
    assert metric_name("fid", split="train", detail="vs_test") == "fid_train_vs_test"
    assert metric_name("digits_score", 256) == "digits_score_256"
    assert metric_name("class_accuracy", detail=scale_name(3.5)) == "class_accuracy_w3.5"
    assert scale_name(None) == "none" and scale_name(0) == "w0"
