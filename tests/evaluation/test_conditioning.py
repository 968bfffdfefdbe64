"""The model call carries conditioning end to end on the evaluation side: FID generation (in-loop and
sharded) and the NLL pass a keyword through to the network, aligned with the images it belongs to."""

import torch
from torch.utils.data import Dataset

from ddpm.diffusion import GaussianDiffusion
from ddpm.evaluation.generation import (
    GenerationSettings,
    generate,
    generate_shards,
    read_images,
    sample_store,
)
from ddpm.evaluation.nll import NLLSettings, dataset_nll
from ddpm.sampling import AncestralSampler


class ProbeNet(torch.nn.Module):
    """eps = 0, but only when called with ``probe`` (one row per image); records what it received."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x_t, t, probe=None):
        assert probe is not None, "the conditioning keyword did not arrive"
        assert probe.shape[0] == x_t.shape[0] == t.shape[0]
        self.seen.append(probe.cpu())
        return torch.zeros_like(x_t)


class ProbeImages(Dataset):
    """Image i carries ``{"probe": i}`` as its conditioning."""

    def __len__(self) -> int:
        return 5

    def __getitem__(self, i):
        return torch.full((1, 4, 4), 0.1 * i - 0.2), {"probe": torch.tensor(i)}


def test_fid_generation_passes_cond_aligned_with_the_samples(tmp_path):
    sampler = AncestralSampler(GaussianDiffusion(num_timesteps=4))
    net = ProbeNet()
    indices = [4, 1, 3]
    cond = {"probe": torch.tensor(indices) * 10}
    batches = list(generate(net, sampler, (1, 4, 4), indices, seed=0, batch_size=2, cond=cond))
    assert sum(x.shape[0] for _, x in batches) == 3
    assert [p.tolist() for p in net.seen] == [[40, 10]] * 4 + [[30]] * 4  # every step of every batch

    settings = GenerationSettings(num_samples=5, batch_size=2, shard_size=2)
    store = sample_store(tmp_path, "fp", settings)
    net.seen.clear()
    generate_shards(
        net, sampler, store, image_shape=(1, 4, 4), settings=settings, cond={"probe": torch.arange(5)}
    )
    assert torch.cat(net.seen[::4]).tolist() == [0, 1, 2, 3, 4]
    assert sum(x.shape[0] for _, x in read_images(store, range(store.num_shards))) == 5


def test_nll_passes_each_image_its_own_cond():
    net = ProbeNet()
    diffusion = GaussianDiffusion(num_timesteps=3)
    stats = dataset_nll(net, diffusion, ProbeImages(), NLLSettings(batch_size=2))
    assert stats.num == 5
    assert torch.cat(net.seen[::3]).tolist() == [0, 1, 2, 3, 4]  # first step of each batch
