"""diffusers' pipeline of a class-conditional DDPM exported by ``ddpm-export`` (copied into the folder).

diffusers' own ``DDPMPipeline`` passes no class labels, and its class-conditional pipelines (DiT) need a
transformer; so ``ddpm-export`` writes this file beside ``unet/`` and ``scheduler/`` and names it in
``model_index.json``, and diffusers loads it from the folder::

    pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    images = pipe(class_labels=[0, 1, 2], guidance_scale=4.0).images

``guidance_scale`` is diffusers' s: eps = eps_u + s (eps_c - eps_u) (classifier-free guidance, Ho &
Salimans 2022); s = 1 is plain conditional sampling (one network call per step), s = 0 unconditional.
``ddpm-sample``'s ``guidance_scale`` is the paper's w (eq. 6) = s - 1. A label -1 asks for the null class
(an unconditional sample). Guidance and the null class are refused when the model was trained without
label dropout (``null_class_trained`` in ``model_index.json``). The file imports only torch and diffusers.
"""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

NULL_LABEL = -1  # the class label meaning "no class" (ddpm.diffusion.denoiser.NULL_LABEL)


class DDPMConditionalPipeline(DiffusionPipeline):
    """A ``UNet2DModel`` with ``num_class_embeds = K + 1`` (row K: the null class) and a scheduler."""

    model_cpu_offload_seq = "unet"

    def __init__(self, unet, scheduler, null_class_trained: bool = False) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(null_class_trained=bool(null_class_trained))

    def class_rows(self, class_labels, guidance_scale: float) -> torch.Tensor:
        """The labels as rows of the class embedding (-1 -> the null row K), checked."""
        num_classes = int(self.unet.config.num_class_embeds) - 1
        labels = torch.as_tensor(class_labels, dtype=torch.long).reshape(-1)
        if labels.numel() == 0 or bool(((labels < NULL_LABEL) | (labels >= num_classes)).any()):
            raise ValueError(f"class_labels must be in 0..{num_classes - 1} (or -1: the null class)")
        if not guidance_scale >= 0.0:
            raise ValueError(
                f"guidance_scale must be >= 0 (1: conditional, 0: unconditional), not {guidance_scale}"
            )
        uses_null = guidance_scale != 1.0 or bool((labels == NULL_LABEL).any())
        if uses_null and not self.config.null_class_trained:
            raise ValueError(
                "this model was trained without label dropout (class_dropout=0): its null class is "
                "untrained, so guidance_scale must be 1 and every label a class"
            )
        return torch.where(labels == NULL_LABEL, num_classes, labels).to(self.device)

    def guided_output(self, x: torch.Tensor, t: torch.Tensor, rows: torch.Tensor, scale: float):
        """The network output guided with scale s; for a learned variance only the mean half is guided."""
        if scale == 1.0:
            return self.unet(x, t, class_labels=rows).sample
        null = torch.full_like(rows, int(self.unet.config.num_class_embeds) - 1)
        out = self.unet(torch.cat([x, x]), t, class_labels=torch.cat([rows, null])).sample
        cond, uncond = out.chunk(2)
        c = x.shape[1]
        # eps_u + s (eps_c - eps_u), written as ddpm's eps_c + w (eps_c - eps_u) (w = s - 1): the same floats
        mean = cond[:, :c] + (scale - 1.0) * (cond[:, :c] - uncond[:, :c])
        return torch.cat([mean, cond[:, c:]], dim=1)

    @torch.no_grad()
    def __call__(
        self,
        class_labels,
        guidance_scale: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """One image per label (an int or a list); ``generator``: one per image reproduces ``ddpm-sample``;
        ``num_inference_steps``: None is every training step (the paper's sampler)."""
        rows = self.class_rows(class_labels, float(guidance_scale))
        size = self.unet.config.sample_size
        shape = (rows.numel(), self.unet.config.in_channels, size, size)
        image = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        self.scheduler.set_timesteps(num_inference_steps or self.scheduler.config.num_train_timesteps)
        for t in self.progress_bar(self.scheduler.timesteps):
            output = self.guided_output(image, t, rows, float(guidance_scale))
            image = self.scheduler.step(output, t, image, generator=generator).prev_sample
        image = (image / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy()
        if output_type == "pil":
            image = self.numpy_to_pil(image)
        return ImagePipelineOutput(images=image) if return_dict else (image,)
