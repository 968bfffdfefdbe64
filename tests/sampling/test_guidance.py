"""Classifier-free guidance (Ho & Salimans 2022) on the exact class-conditional Gaussian oracle.

Closed form. With class k ~ N(m_k, s^2) and an unconditional model N(m_u, s^2) of the same variance, the
guided eps (1 + w) eps_k - w eps_u = sqrt(1 - abar) (x - sqrt(abar) m_w) / (abar s^2 + 1 - abar) with
m_w = m_k + w (m_k - m_u): exactly the eps of data N(m_w, s^2). So every guided sampler must produce
what the same sampler produces for that Gaussian, and the full ancestral chain samples N(m_w, s^2).
With different variances the guided eps is still affine in x_t, and deterministic DDIM is the affine map
whose coefficients a float64 scalar recursion (below) computes independently of the library.
"""

from __future__ import annotations

import math

import pytest
import torch

from ddpm.cli.labels import balanced_labels
from ddpm.diffusion import GaussianDiffusion
from ddpm.diffusion.denoiser import NULL_LABEL
from ddpm.errors import ConfigError
from ddpm.models import UNet
from ddpm.sampling import DDIMSampler, PerSampleNoise, make_sampler, sample, sampler_names
from ddpm.sampling.guidance import GuidedModel, GuidedSampler, guide
from ddpm.sampling.registry import sampler_settings
from ddpm.testing.oracle import ClassConditionalOracle, GaussianOracle, exact_moments
from tests.sampling.test_oracle import within_tolerance

SHAPE = (1, 2, 2)
LINEAR = GaussianDiffusion()


def _oracle(equal_std: bool = True, mixture_null: bool = False, seed: int = 0) -> ClassConditionalOracle:
    g = torch.Generator().manual_seed(seed)
    means = torch.rand((3, *SHAPE), generator=g) - 0.5
    stds = torch.full((3, *SHAPE), 0.4) if equal_std else 0.2 + 0.5 * torch.rand((3, *SHAPE), generator=g)
    null = None if mixture_null else (means.mean(0) * 0.5, torch.full(SHAPE, 0.4) if equal_std else stds[2])
    return ClassConditionalOracle(LINEAR, means, stds, null=null)


def _settings(name: str, **extra: object) -> dict:
    """No clipping (so samplers stay affine), where the sampler has that setting."""
    return {**({"clip_denoised": False} if "clip_denoised" in sampler_settings(name)[1] else {}), **extra}


def test_mixture_eps_is_minus_sqrt_one_minus_abar_times_the_exact_score():
    """eps_u = -sqrt(1 - abar) grad log p_t(x) with p_t the mixture marginal (autograd, float64)."""
    oracle = ClassConditionalOracle(
        LINEAR,
        torch.randn(3, *SHAPE, dtype=torch.float64),
        0.3 + torch.rand(3, *SHAPE, dtype=torch.float64),
        weights=torch.tensor([0.2, 0.3, 0.5]),
    )
    t = torch.tensor([0, 10, 200, 999])
    x = torch.randn(4, *SHAPE, dtype=torch.float64, requires_grad=True)
    abar = LINEAR.alphas_cumprod[t].view(-1, 1, 1, 1, 1)
    comp = torch.distributions.Normal(abar.sqrt() * oracle.means, (abar * oracle.stds**2 + 1 - abar).sqrt())
    log_p = torch.logsumexp(comp.log_prob(x[:, None]).flatten(2).sum(-1) + oracle.weights.log(), dim=1)
    (score,) = torch.autograd.grad(log_p.sum(), x)
    expected = -(1 - abar[:, 0]).sqrt() * score
    assert torch.allclose(oracle(x.detach(), t), expected, rtol=1e-10, atol=1e-12)
    assert torch.allclose(oracle(x.detach(), t, class_labels=torch.full((4,), NULL_LABEL)), expected)


@pytest.mark.parametrize("label", [0, 1, 2])
def test_conditional_sampling_reproduces_each_class_component(label):
    oracle = _oracle(equal_std=False, mixture_null=True)
    mean, var = exact_moments(make_sampler("ancestral", LINEAR, clip_denoised=False), oracle, label=label)
    ok, message = within_tolerance(mean, var, oracle.component(label), 2000)
    assert ok, message
    other = oracle.component((label + 1) % 3)
    assert not within_tolerance(mean, var, other, 2000)[0]  # the check can fail


@pytest.mark.parametrize("name", sampler_names())
def test_guidance_in_every_sampler_gives_the_closed_form_gaussian_with_one_call_per_step(name):
    oracle, w, label = _oracle(), 2.0, 1
    guided = make_sampler(name, LINEAR, **_settings(name, guidance_scale=w))
    assert isinstance(guided, GuidedSampler) and guided.rows_per_image == 2
    mean, var = exact_moments(guided, oracle, label=label)
    m_w = oracle.means[label] + w * (oracle.means[label] - oracle.null[0])
    target = GaussianOracle(LINEAR, m_w, oracle.stds[label])
    ref_mean, ref_var = exact_moments(make_sampler(name, LINEAR, **_settings(name)), target)
    assert torch.allclose(mean, ref_mean, atol=1e-9) and torch.allclose(var, ref_var, atol=1e-9)
    # one batched network call per step, conditional and unconditional halves together
    rows = 2 * (guided.num_steps + 2)
    assert oracle.batch_sizes == [rows] * guided.num_steps


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_a_larger_scale_moves_the_samples_as_the_closed_form_predicts(w):
    oracle, label = _oracle(), 0
    guided = make_sampler("ancestral", LINEAR, clip_denoised=False, guidance_scale=w)
    mean, var = exact_moments(guided, oracle, label=label)
    m_w = oracle.means[label] + w * (oracle.means[label] - oracle.null[0])
    ok, message = within_tolerance(mean, var, GaussianOracle(LINEAR, m_w, oracle.stds[label]), 2000)
    assert ok, message
    assert (mean - oracle.means[label]).abs().max() > 0.2 * w  # it did move (w > 0)


def _ddim_affine_map(sampler: DDIMSampler, oracle: ClassConditionalOracle, label: int, w: float):
    """Deterministic DDIM x_0 = A x_T + B under the guided affine eps = a_t x + b_t (float64 recursion)."""
    m_c, s_c, (m_u, s_u) = oracle.means[label], oracle.stds[label], oracle.null
    big_a, big_b = torch.ones(SHAPE, dtype=torch.float64), torch.zeros(SHAPE, dtype=torch.float64)
    abar_all = LINEAR.alphas_cumprod.double()
    steps = sampler.timesteps
    for i in reversed(range(len(steps))):
        ab = abar_all[steps[i]]
        ab_prev = abar_all[steps[i - 1]] if i > 0 else torch.tensor(1.0, dtype=torch.float64)
        d_c, d_u = ab * s_c**2 + 1 - ab, ab * s_u**2 + 1 - ab
        a = (1 - ab).sqrt() * ((1 + w) / d_c - w / d_u)
        b = -(1 - ab).sqrt() * ab.sqrt() * ((1 + w) * m_c / d_c - w * m_u / d_u)
        c1, c2 = (ab_prev / ab).sqrt(), (1 - ab_prev).sqrt() - (ab_prev * (1 - ab) / ab).sqrt()
        big_a, big_b = (c1 + c2 * a) * big_a, (c1 + c2 * a) * big_b + c2 * b
    return big_b, big_a**2


def test_guided_ddim_is_the_affine_map_of_the_closed_form_recursion():
    oracle, label, w = _oracle(equal_std=False), 2, 1.5
    ddim = DDIMSampler(LINEAR, steps=20, clip_denoised=False)
    mean, var = exact_moments(GuidedSampler(ddim, w), oracle, label=label)
    ref_mean, ref_var = _ddim_affine_map(ddim, oracle, label, w)
    assert torch.allclose(mean, ref_mean, atol=1e-10) and torch.allclose(var, ref_var, atol=1e-10)


def _tiny_conditional_unet() -> UNet:
    torch.manual_seed(0)
    net = UNet(1, 1, ch=32, ch_mult=(1, 2), attn_resolutions=(), resolution=8, num_classes=3).eval()
    with torch.no_grad():  # non-zero output layers (they are zero-initialised)
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def test_guidance_scale_zero_is_plain_conditional_sampling_bit_for_bit():
    net, labels = _tiny_conditional_unet(), torch.tensor([0, 2, 1, 1])
    for name in ("ddim", "dpm_solver_pp_2m"):
        plain = sample(
            net, LINEAR, (1, 8, 8), seeds=range(4), sampler=name, steps=5, cond={"class_labels": labels}
        )
        zero = sample(
            net,
            LINEAR,
            (1, 8, 8),
            seeds=range(4),
            sampler=name,
            steps=5,
            guidance_scale=0.0,
            cond={"class_labels": labels},
        )
        assert torch.equal(plain, zero)
    oracle = _oracle(mixture_null=True)
    counted = GuidedModel(oracle, 0.0)
    x, t = torch.randn(4, *SHAPE, dtype=torch.float64), torch.full((4,), 300)
    assert torch.equal(counted(x, t, class_labels=labels), oracle(x, t, class_labels=labels))
    assert oracle.batch_sizes[-1] == 4  # no unconditional half at w = 0


def test_guided_model_is_the_formula_and_minus_one_is_unconditional():
    oracle, labels = _oracle(mixture_null=True), torch.tensor([0, 1, 2, 0])
    x, t = torch.randn(4, *SHAPE, dtype=torch.float64), torch.tensor([5, 50, 500, 900])
    eps_c, eps_u = oracle(x, t, class_labels=labels), oracle(x, t)
    for w in (0.5, 3.0, -1.0):
        out = GuidedModel(oracle, w)(x, t, class_labels=labels)
        assert torch.allclose(out, (1 + w) * eps_c - w * eps_u, rtol=1e-12, atol=1e-12)
    assert torch.allclose(GuidedModel(oracle, -1.0)(x, t, class_labels=labels), eps_u, atol=1e-12)
    # a real network: the batched 2B call equals two separate calls (to float32 rounding)
    net = _tiny_conditional_unet()
    xf, tf, lab = torch.randn(3, 1, 8, 8), torch.tensor([3, 40, 90]), torch.tensor([2, 0, 1])
    with torch.no_grad():
        expected = 3 * net(xf, tf, class_labels=lab) - 2 * net(xf, tf)
        assert torch.allclose(GuidedModel(net, 2.0)(xf, tf, class_labels=lab), expected, atol=1e-5)


def test_learned_variance_guides_only_the_mean_half():
    cond_out, uncond_out = torch.randn(2, 6, 4, 4), torch.randn(2, 6, 4, 4)
    out = guide(cond_out, uncond_out, 2.0, channels=3)
    assert torch.equal(out[:, 3:], cond_out[:, 3:])
    assert torch.allclose(out[:, :3], 3 * cond_out[:, :3] - 2 * uncond_out[:, :3])
    diffusion = GaussianDiffusion(var_type="learned_range", num_timesteps=100)
    net = UNet(1, 2, ch=32, ch_mult=(1,), attn_resolutions=(), resolution=8, num_classes=2).eval()
    images = sample(
        net,
        diffusion,
        (1, 8, 8),
        seeds=[0, 1],
        sampler="ancestral_respaced",
        steps=4,
        guidance_scale=1.0,
        cond={"class_labels": torch.tensor([0, 1])},
    )
    assert images.shape == (2, 1, 8, 8) and torch.isfinite(images).all()


def test_guidance_errors_and_balanced_labels():
    sampler = make_sampler("ddim", LINEAR, steps=3, guidance_scale=1.0)
    with pytest.raises(ConfigError, match="needs class labels"):
        sampler.sample(_oracle(), SHAPE, PerSampleNoise([0]), "cpu")
    with pytest.raises(ConfigError, match="guidance_scale must be"):
        make_sampler("ddim", LINEAR, guidance_scale=-2.0)
    with pytest.raises(ConfigError, match="guidance_scale must be"):
        GuidedSampler(sampler, math.nan)
    assert make_sampler("ddim", LINEAR, guidance_scale=None).__class__ is DDIMSampler
    assert balanced_labels(7, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]
    with pytest.raises(ConfigError, match="num_classes"):
        balanced_labels(4, 0)


def test_the_progress_bar_counts_both_halves_of_every_guided_call(monkeypatch):
    from ddpm.sampling import iter_samples, loop

    bars = []

    class Bar:
        def __init__(self, total: int) -> None:
            self.total, self.n = total, 0
            bars.append(self)

        def update(self, k: int) -> None:
            self.n += k

        def set_postfix_str(self, text: str) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr(loop, "progress_bar", lambda enabled, description, total, leave: Bar(total))
    sampler = make_sampler("ddim", LINEAR, steps=4, clip_denoised=False, guidance_scale=1.0)
    cond = {"class_labels": torch.tensor([0, 1, 2, 0, 1])}
    list(iter_samples(_oracle(), sampler, SHAPE, range(5), batch_size=2, cond=cond, progress=True))
    assert bars[0].n == bars[0].total == 5 * 4 * 2
