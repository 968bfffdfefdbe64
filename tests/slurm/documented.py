"""The CPU cluster commands the docs show, verbatim (run from the repository root; the job's environment
is the submitting shell's, so an activated virtual environment's ``ddpm-train`` is found).
test_documented.py runs each exactly as written, with only ``SHORTEN`` appended."""

DOCUMENTED = [
    "sbatch --ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=0 scripts/slurm/train.sbatch experiment=quickstart trainer=slurm_cpu trainer.devices=2",  # noqa: E501
    "sbatch --nodes=2 --ntasks-per-node=1 --cpus-per-task=1 --gpus-per-node=0 scripts/slurm/train.sbatch experiment=quickstart trainer=slurm_cpu trainer.devices=1 trainer.num_nodes=2",  # noqa: E501
    "ddpm-train -m experiment=quickstart seed=0,1 hydra/launcher=slurm_cpu",
]
# the tests' only addition: 20 steps instead of the quickstart's 1000
SHORTEN = ["trainer.max_steps=20", "trainer.val_check_interval=10"]
