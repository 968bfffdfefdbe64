"""experiment=ddpm_cifar10_fast is the paper's recipe with only the speed switches changed."""

from omegaconf import OmegaConf

from tests.helpers import compose_train


def flat(cfg) -> dict:
    def walk(node, prefix):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, f"{prefix}{key}.")
        else:
            yield prefix[:-1], node

    return dict(walk(OmegaConf.to_container(cfg, resolve=True), ""))


def test_fast_cifar10_differs_from_the_exact_one_only_in_speed_switches(tmp_path):
    exact = flat(compose_train(["experiment=ddpm_cifar10"], tmp_path))
    fast = flat(compose_train(["experiment=ddpm_cifar10_fast"], tmp_path))
    changed = {key for key in exact.keys() | fast.keys() if exact.get(key) != fast.get(key)}
    # paths, tags and the W&B run's name and group follow task_name
    changed = {key for key in changed if not key.startswith(("paths.", "tags", "logger."))}
    assert changed == {"task_name", "trainer.precision", "module.compile", "module.channels_last"}
    assert fast["trainer.precision"] == "bf16-mixed"
    assert fast["module.compile"] is True and fast["module.channels_last"] is True
    assert fast["module.optimizer.fused"] is None and fast["float32_matmul_precision"] == "high"
