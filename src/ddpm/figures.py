"""The DDPM paper's figures as functions (Ho et al. 2020, Sec. 4.3-4.4 and Appendix D).

Every function takes any ``model(x_t, t) -> output`` (e.g. ``module.ema_net`` in eval mode), the
GaussianDiffusion it was trained with and images in model space [-1, 1], and returns
``(figure, data)``: a matplotlib Figure and the tensors it shows. Randomness comes from explicit seeds
(per-sample noise, :class:`~ddpm.sampling.PerSampleNoise`), so figures are reproducible.

- :func:`forward_process_strip`: x_t ~ q(x_t | x_0) at increasing t.
- :func:`progressive_generation`: the predicted x_0 along the reverse chain (paper Fig. 6).
- :func:`shared_latent_samples`: samples from p(x_0 | x_t) sharing one x_t (paper Fig. 7).
- :func:`interpolate`: interpolation of two images through their noisy latents at t (paper Fig. 8).
- :func:`inpaint`: the reverse chain conditioned on known pixels (replacement conditioning,
  :func:`ddpm.sampling.inpaint.inpaint_replacement`; a trained model used as a prior as in
  Sohl-Dickstein et al. 2015, Sec. 2.5).
- :func:`rate_distortion`: rate (cumulative bits/dim of the variational bound) and distortion (RMSE
  of the x_0 prediction) along the reverse chain (paper Fig. 5, progressive lossy compression).

By default the chains are the full ancestral sampler; pass ``sampler=AncestralSampler(d, steps=100)``
(a respaced chain) for quick previews. Requested timesteps are snapped to the sampler's chain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor

from ddpm.diffusion.denoiser import Model
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.likelihood import bound_term_at, bound_terms, prior_bpd, rate_distortion_curve
from ddpm.errors import ConfigError
from ddpm.sampling.ancestral import AncestralSampler
from ddpm.sampling.base import full_timestep
from ddpm.sampling.inpaint import center_mask, inpaint_replacement
from ddpm.sampling.noise import PerSampleNoise
from ddpm.sampling.spacing import make_timesteps
from ddpm.utils.rng import derive_seed, make_generator

__all__ = [
    "center_mask",
    "forward_process_strip",
    "image_grid_figure",
    "inpaint",
    "interpolate",
    "progressive_generation",
    "rate_distortion",
    "shared_latent_samples",
    "snap_timestep",
]


# ---------------------------------------------------------------------- helpers
def _to_numpy_image(x: Tensor):
    """[C, H, W] in [-1, 1] -> HxW or HxWxC array in [0, 1]."""
    img = ((x.detach().cpu().float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
    return img[:, :, 0] if img.shape[2] == 1 else img


def image_grid_figure(
    images: Sequence[Sequence[Tensor]],
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    cell_size: float = 1.1,
) -> Figure:
    """A figure with one image per cell: ``images[r][c]`` is a [C, H, W] tensor in [-1, 1]."""
    rows = len(images)
    cols = max(len(r) for r in images) if rows else 0
    fig = Figure(
        figsize=(max(1, cols) * cell_size + 0.6, max(1, rows) * cell_size + 0.4), layout="constrained"
    )
    axes = fig.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(images[r]) and images[r][c] is not None:
                ax.imshow(_to_numpy_image(images[r][c]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if row_labels is not None and c == 0:
                ax.set_ylabel(row_labels[r], fontsize=8)
            if col_labels is not None and r == 0:
                ax.set_title(col_labels[c], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def snap_timestep(t: int, timesteps: Sequence[int]) -> int:
    """The timestep of ``timesteps`` nearest to ``t``."""
    return min(timesteps, key=lambda s: (abs(s - int(t)), s))


def _sampler(diffusion: GaussianDiffusion, sampler: AncestralSampler | None) -> AncestralSampler:
    sampler = sampler if sampler is not None else AncestralSampler(diffusion)
    if not isinstance(sampler, AncestralSampler):
        raise ConfigError(
            "the figures run the ancestral chain: pass an AncestralSampler (respaced if you like)"
        )
    return sampler


def _noise_like(x: Tensor, *seed_parts: int | str) -> Tensor:
    gen = make_generator(derive_seed(*seed_parts), "cpu")
    return torch.randn(x.shape, generator=gen).to(device=x.device, dtype=x.dtype)


# ---------------------------------------------------------------------- forward process
@torch.no_grad()
def forward_process_strip(
    diffusion: GaussianDiffusion,
    x0: Tensor,
    timesteps: Sequence[int] = (0, 50, 100, 200, 300, 500, 700, 999),
    seed: int = 0,
) -> tuple[Figure, Tensor]:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (eq. 4) for each image (rows) at each t (columns).

    One eps per image is shared by all t, so a row shows the same noise growing. Returns the figure
    and x_t as [N, len(timesteps), C, H, W].
    """
    timesteps = [min(max(int(t), 0), diffusion.num_timesteps - 1) for t in timesteps]
    noise = _noise_like(x0, "forward_strip", seed)
    strips = torch.stack([diffusion.q_sample(x0, full_timestep(t, x0), noise) for t in timesteps], dim=1)
    fig = image_grid_figure(
        [list(row) for row in strips],
        col_labels=[f"t={t + 1}" for t in timesteps],
        title="Forward process q(x_t | x_0)",
    )
    return fig, strips


# ---------------------------------------------------------------------- Fig. 6
@torch.no_grad()
def progressive_generation(
    model: Model,
    diffusion: GaussianDiffusion,
    shape: Sequence[int],
    num_samples: int = 4,
    num_frames: int = 8,
    seed: int = 0,
    sampler: AncestralSampler | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Figure, dict[str, Any]]:
    """Predicted x_0 = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t) along the reverse chain (Fig. 6).

    Large-scale features appear first and details last. Rows: samples; columns: timesteps from T to 1
    (plus x_t of the same steps in ``data["x_t"]``). Returns the figure and
    ``{"timesteps", "pred_x0" [F, N, C, H, W], "x_t", "samples"}``.
    """
    sampler = _sampler(diffusion, sampler)
    record_every = max(1, math.ceil(sampler.num_steps / max(1, num_frames - 1)))
    noise = PerSampleNoise(range(seed, seed + num_samples), device)
    samples, traj = sampler.progressive(model, tuple(shape), noise, device, record_every=record_every)
    pred_x0 = torch.stack(traj.pred_x0)
    fig = image_grid_figure(
        [[pred_x0[f, i] for f in range(len(traj.timesteps))] for i in range(num_samples)],
        col_labels=[f"t={t + 1}" for t in traj.timesteps],
        title="Progressive generation: predicted x_0 along the reverse chain",
    )
    return fig, {
        "timesteps": traj.timesteps,
        "pred_x0": pred_x0,
        "x_t": torch.stack(traj.x_t),
        "samples": samples.cpu(),
    }


# ---------------------------------------------------------------------- Fig. 7
@torch.no_grad()
def shared_latent_samples(
    model: Model,
    diffusion: GaussianDiffusion,
    x0: Tensor,
    timesteps: Sequence[int] = (999, 750, 500, 250),
    num_samples: int = 4,
    seed: int = 0,
    sampler: AncestralSampler | None = None,
) -> tuple[Figure, dict[str, Any]]:
    """Samples x_0 ~ p_theta(x_0 | x_t) that share one x_t ~ q(x_t | x_0) (paper Fig. 7).

    ``x0`` is one image [C, H, W] (or [1, C, H, W]). Row k: x_t at ``timesteps[k]`` then
    ``num_samples`` reverse chains from it with different seeds; the closer t is to 0, the more the
    samples share with the original. Returns the figure and ``{"timesteps", "x_t", "samples"}``.
    """
    sampler = _sampler(diffusion, sampler)
    x0 = x0.unsqueeze(0) if x0.dim() == 3 else x0[:1]
    rows, row_labels, latents, all_samples = [], [], [], []
    ts = [snap_timestep(t, sampler.timesteps) for t in timesteps]
    for k, t in enumerate(ts):
        x_t = diffusion.q_sample(x0, full_timestep(t, x0), _noise_like(x0, "shared_latent", seed, t))
        noise = PerSampleNoise([derive_seed(seed, k, j) for j in range(num_samples)], x0.device)
        samples = sampler.sample_from(model, x_t.expand(num_samples, *x_t.shape[1:]).clone(), t, noise)
        rows.append([x0[0], x_t[0], *samples])
        row_labels.append(f"t={t + 1}")
        latents.append(x_t[0].cpu())
        all_samples.append(samples.cpu())
    fig = image_grid_figure(
        rows,
        row_labels=row_labels,
        col_labels=["x_0", "x_t", *[f"sample {j + 1}" for j in range(num_samples)]],
        title="Samples sharing x_t: p(x_0 | x_t)",
    )
    return fig, {"timesteps": ts, "x_t": torch.stack(latents), "samples": torch.stack(all_samples)}


# ---------------------------------------------------------------------- Fig. 8
@torch.no_grad()
def interpolate(
    model: Model,
    diffusion: GaussianDiffusion,
    x_a: Tensor,
    x_b: Tensor,
    t: int = 500,
    num_steps: int = 8,
    seed: int = 0,
    sampler: AncestralSampler | None = None,
) -> tuple[Figure, dict[str, Any]]:
    """Interpolation in the noisy latent space (paper Sec. 4.3, Fig. 8).

    x_t = q(x_t | x_a), x'_t = q(x'_t | x_b) (the stochastic encoder), x̄_t = (1 - lambda) x_t + lambda x'_t,
    decoded by the reverse chain from t with the SAME reverse noise for every lambda. Larger t gives
    coarser, more varied interpolations. Returns the figure and ``{"lambdas", "t", "images"}``.
    """
    sampler = _sampler(diffusion, sampler)
    t = snap_timestep(t, sampler.timesteps)
    x_a = x_a.unsqueeze(0) if x_a.dim() == 3 else x_a[:1]
    x_b = x_b.unsqueeze(0) if x_b.dim() == 3 else x_b[:1]
    tt = full_timestep(t, x_a)
    lat_a = diffusion.q_sample(x_a, tt, _noise_like(x_a, "interp_a", seed, t))
    lat_b = diffusion.q_sample(x_b, tt, _noise_like(x_b, "interp_b", seed, t))
    lambdas = torch.linspace(0, 1, num_steps)
    lam = lambdas.to(x_a.device).view(-1, *([1] * (x_a.dim() - 1)))
    latents = (1 - lam) * lat_a + lam * lat_b
    noise = PerSampleNoise([derive_seed("interp", seed)] * num_steps, x_a.device)  # shared reverse noise
    images = sampler.sample_from(model, latents, t, noise)
    fig = image_grid_figure(
        [[x_a[0], *images, x_b[0]]],
        col_labels=["source", *[f"λ={float(v):.2f}" for v in lambdas], "source"],
        title=f"Interpolation through the noisy latent at t={t + 1}",
    )
    return fig, {"lambdas": lambdas, "t": t, "images": images.cpu()}


# ---------------------------------------------------------------------- inpainting
@torch.no_grad()
def inpaint(
    model: Model,
    diffusion: GaussianDiffusion,
    x0: Tensor,
    mask: Tensor | None = None,
    num_samples: int = 4,
    seed: int = 0,
    sampler: AncestralSampler | None = None,
) -> tuple[Figure, dict[str, Any]]:
    """Fill the unknown pixels (``mask == 0``) of ``x0`` by conditioning the reverse chain on the known ones.

    The algorithm (replacement conditioning) is :func:`ddpm.sampling.inpaint.inpaint_replacement`.
    ``x0``: [N, C, H, W] or one [C, H, W] image (then ``num_samples`` completions of it); ``mask``:
    broadcastable to ``x0``, 1 = known (default: the centre square is unknown). Returns the figure and
    ``{"mask", "masked", "samples"}``.
    """
    sampler = _sampler(diffusion, sampler)
    if x0.dim() == 3:
        x0 = x0.unsqueeze(0).expand(num_samples, *x0.shape).clone()
    mask = center_mask(x0.shape[1:]) if mask is None else mask
    mask = mask.to(device=x0.device, dtype=x0.dtype).expand_as(x0)
    samples = inpaint_replacement(model, sampler, x0, mask, seed=seed)
    masked = x0 * mask  # the unknown region shown mid-grey (0 in model space)
    fig = image_grid_figure(
        [[x0[i], masked[i], samples[i]] for i in range(x0.shape[0])],
        col_labels=["original", "known pixels", "inpainted"],
        title="Inpainting by conditioning the reverse chain",
    )
    return fig, {"mask": mask.cpu(), "masked": masked.cpu(), "samples": samples.cpu()}


# ---------------------------------------------------------------------- Fig. 5
@torch.no_grad()
def rate_distortion(
    model: Model,
    diffusion: GaussianDiffusion,
    x0: Tensor,
    num_points: int | None = None,
    seed: int = 0,
) -> tuple[Figure, dict[str, Any]]:
    """Rate and distortion of progressive lossy decompression along the reverse chain (paper Fig. 5).

    Terms from :func:`~ddpm.diffusion.likelihood.bound_terms` (image i's noise: ``PerSampleNoise``
    seeded ``derive_seed("rate_distortion", seed, i)``), curve from
    :func:`~ddpm.diffusion.likelihood.rate_distortion_curve`: once x_{t+1} is known the receiver holds
    R(t) = L_T + sum_{s > t} L_s bits/dim (eq. 5; at t = 0 the bound minus the decoder term L_0) and
    reconstructs x̂_0(x_{t+1}) with distortion D(t) = RMSE on the [0, 255] scale. With ``num_points``
    < T only that many timesteps, spaced quadratically, are evaluated (the same per-timestep
    :func:`~ddpm.diffusion.likelihood.bound_term_at`) and each term stands for the timesteps nearest
    to it (a midpoint rule for the sums). Returns the figure and ``{"timesteps", "rate_bpd",
    "distortion_rmse", "terms_bpd", "weights", "prior_bpd"}``, from t = T-1 to 0.
    """
    T, n = diffusion.num_timesteps, x0.shape[0]
    if num_points is not None and not 2 <= num_points <= T:
        raise ConfigError(f"num_points must be in [2, {T}] (or None for all timesteps), got {num_points}")
    up = make_timesteps(T, num_points, "quadratic")  # ascending, 0 and T-1 included
    # KL point up[i] (i >= 1) stands for the timesteps from the midpoint with its lower neighbour on.
    lower = [1] + [(up[i - 1] + up[i]) // 2 + 1 for i in range(2, len(up))]
    upper = [lo - 1 for lo in lower[1:]] + [T - 1]
    weights_up = [1] + [hi - lo + 1 for lo, hi in zip(lower, upper)]
    noise = PerSampleNoise([derive_seed("rate_distortion", seed, i) for i in range(n)], x0.device)
    if len(up) == T:
        bound = bound_terms(model, diffusion, x0, noise)
        terms, x0_mse = bound.terms.sum(0) / n, bound.x0_mse.sum(0) / n
    else:  # the evaluated timesteps, T-1 first as in bound_terms, each standing for its block
        shape = x0.shape[1:]
        evaluated = [
            bound_term_at(model, diffusion, x0, noise.randn(shape, x0.device, x0.dtype), t) for t in up[::-1]
        ][::-1]
        owner = torch.repeat_interleave(torch.arange(len(up)), torch.tensor(weights_up)).to(x0.device)
        terms = torch.stack([term.sum() / n for term, _, _ in evaluated])[owner]
        x0_mse = torch.stack([mse.sum() / n for _, _, mse in evaluated])[owner]
    prior = prior_bpd(diffusion, x0).double().sum() / n
    rate, distortion = (v.cpu()[up[::-1]] for v in rate_distortion_curve(prior, terms, x0_mse))
    ts, weights = up[::-1], weights_up[::-1]
    steps = [T - 1 - t for t in ts]  # reverse steps taken once x_{t+1} (paper index) is known
    fig = Figure(figsize=(11, 3.2), layout="constrained")
    step_label, rate_label = "reverse process steps (T - t)", "rate (bits/dim)"
    dist_label = "distortion (RMSE, [0, 255])"
    panels = [(steps, distortion, step_label, dist_label), (steps, rate, step_label, rate_label)]
    panels.append((rate, distortion, rate_label, dist_label))
    for ax, (x, y, x_label, y_label) in zip(fig.subplots(1, 3), panels):
        ax.plot(x, y)
        ax.set(xlabel=x_label, ylabel=y_label)
    fig.suptitle("Progressive lossy compression: rate-distortion along the reverse chain", fontsize=10)
    return fig, {
        "timesteps": ts,
        "rate_bpd": rate,
        "distortion_rmse": distortion,
        "terms_bpd": terms.cpu()[ts],
        "weights": weights,
        "prior_bpd": float(prior),
    }
