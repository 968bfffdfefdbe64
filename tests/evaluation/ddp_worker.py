"""Worker of the DDP tests, run in subprocesses (never in the pytest process).

    python ddp_worker.py plain OUT INCEPTION      # env RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT: gloo
    python ddp_worker.py lightning OUT INCEPTION DEVICES   # Lightning's own DDP launcher starts rank 1

``plain``: generation (in memory and as NPZ shards), Inception statistics and features (gathered, and
through ddpm-eval's feature shards), reference statistics and features, KID and precision/recall, a
second feature pass (VGG-16's, with a stand-in network: shards, cached reference features), and the NLL,
sharded over the ranks and all-reduced; rank 0 writes ``OUT/result.json``.
``lightning``: a Trainer with the FID and NLL callbacks (learning rate 0, so the EMA weights are the
same for any number of ranks); every rank writes ``OUT/rank{r}.json`` with the logged metrics.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for tests.*

from ddpm.diffusion import GaussianDiffusion
from ddpm.evaluation.fid_is import (
    FIDSettings,
    sample_statistics,
    store_features,
    store_statistics,
    stored_features,
)
from ddpm.evaluation.generation import (
    GenerationSettings,
    generate,
    generate_shards,
    read_images,
    sample_store,
)
from ddpm.evaluation.nll import NLLSettings, dataset_nll
from ddpm.metrics.inception import InceptionFeatureExtractor
from ddpm.metrics.kid_pr import kid, precision_recall
from ddpm.metrics.reference_cache import reference_features, reference_statistics
from ddpm.metrics.statistics import fid
from ddpm.sampling import AncestralSampler
from ddpm.utils.distributed import barrier, rank_and_world
from tests.evaluation.helpers import FakeDataModule
from tests.helpers import quiet_trainer, tiny_unet
from tests.metrics.helpers import StubExtractor

NUM_SAMPLES = 5  # odd: the ranks get uneven shares


def plain(out: Path, inception_path: str) -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
    rank, world = rank_and_world()
    torch.set_num_threads(1)
    model = tiny_unet(3, 8)
    sampler = AncestralSampler(GaussianDiffusion(num_timesteps=8))
    extractor = InceptionFeatureExtractor(inception_path)

    protocol = FIDSettings(is_splits=(2, 1), batch_size=4, kid=True, precision_recall=True)
    my_indices = range(rank, NUM_SAMPLES, world)
    batches = generate(model, sampler, (3, 8, 8), my_indices, seed=0, batch_size=2)
    stats, gathered = sample_statistics(extractor, batches, NUM_SAMPLES, protocol, torch.device("cpu"))

    settings = GenerationSettings(num_samples=NUM_SAMPLES, batch_size=2, shard_size=2, seed=0)
    store = sample_store(out / "samples", "fp", settings)
    generate_shards(model, sampler, store, image_shape=(3, 8, 8), settings=settings, progress=False)
    barrier()
    store_stats, features = store_statistics(
        extractor, store, store.shards_of_rank(rank, world), protocol, torch.device("cpu")
    )
    stored = stored_features(features)

    data = FakeDataModule(n_train=4, n_test=4)
    reference_set = reference_statistics(
        data.train_set, "fake", "train", extractor, None, batch_size=2, with_features=True
    )
    reference = reference_set.stats
    real = reference_set.features
    nll = dataset_nll(model, sampler.diffusion, data.val_set, NLLSettings(batch_size=1))
    second = StubExtractor(dim=6, seed=1)  # stands in for VGG-16 (the real one: test_vgg16_pr.py)
    second.name, second.feature_space = "vgg16", "stub_fc"
    second_stored = store_features(second, store, store.shards_of_rank(rank, world), protocol, "cpu")
    second_real = reference_features(data.train_set, "fake", "train", second, out / "cache", batch_size=3)
    second_again = reference_features(data.train_set, "fake", "train", second, out / "cache", batch_size=3)
    scores = {  # collectives: every rank computes its share of the subsets / rows
        "kid": kid(gathered, real, subsets=5),
        "precision_recall": precision_recall(gathered, real, k=2, batch=3),
        "kid_stored": kid(stored, real, subsets=5),
        "precision_recall_stored": precision_recall(stored, real, k=2, batch=3),
        "precision_recall_second": precision_recall(second_stored, second_real.features, k=2, batch=3),
        "second_features": torch.cat([second_stored, second_real.features]).flatten().tolist(),
        "second_hits": [second_real.hit, second_again.hit],
    }
    if rank == 0:
        images = torch.cat([x for _, x in read_images(store, range(store.num_shards))])
        result = {
            "world": world,
            "fid": fid(stats.features, reference.features),
            "is_2splits": stats.inception_score(2),
            "is_1split": stats.inception_score(1)[0],
            "reference_mean_norm": float(reference.features.mean().norm()),
            **scores,
            "fid_stored": fid(store_stats.features, reference.features),
            "nll_bpd": nll.summary()["bpd"],
            "nll_terms": nll.summary()["terms_bpd"],
            "shards_sha256": hashlib.sha256(images.numpy().tobytes()).hexdigest(),
        }
        (out / "result.json").write_text(json.dumps(result))
    barrier()
    if dist.is_initialized():
        dist.destroy_process_group()


def lightning(out: Path, inception_path: str, devices: int) -> None:

    from ddpm.callbacks.evaluation import FIDCallback
    from ddpm.callbacks.nll import NLLCallback
    from ddpm.evaluation.fid_is import FIDSettings
    from ddpm.lightning import DDPMLitModule

    torch.set_num_threads(1)
    datamodule = FakeDataModule(n_train=16, n_test=4)
    module = DDPMLitModule(
        tiny_unet(3, 8),
        GaussianDiffusion(num_timesteps=8),
        optimizer=functools.partial(torch.optim.SGD, lr=0.0),
        warmup_steps=0,
    )
    fid_callback = FIDCallback(
        every_n_steps=2,
        num_samples=NUM_SAMPLES,
        batch_size=2,
        metrics=FIDSettings(
            reference_splits=("train", "test"),
            num_reference_images=4,
            inception_weights=inception_path,
            allow_download=False,
            cache_dir=str(out / "cache"),
            batch_size=4,
            is_splits=(2, 1),
            kid=True,
            kid_subsets=5,
            precision_recall=True,
            pr_neighbours=2,
        ),
    )
    nll_callback = NLLCallback(every_n_steps=2, num_images=3, batch_size=1, output_dir=str(out / "nll"))
    trainer = quiet_trainer(
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        max_steps=2,
        limit_val_batches=0,
        callbacks=[fid_callback, nll_callback],
    )
    trainer.fit(module, datamodule=datamodule)
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("eval/")}
    (out / f"rank{trainer.global_rank}.json").write_text(
        json.dumps({"world": trainer.world_size, "logged": logged})
    )


if __name__ == "__main__":
    mode, out_dir, weights = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    out_dir.mkdir(parents=True, exist_ok=True)
    if mode == "plain":
        plain(out_dir, weights)
    else:
        lightning(out_dir, weights, int(sys.argv[4]))
