"""``<task>/runs/latest`` names the newest run directory; sweeps' job directories get none."""

from ddpm.utils.run_dir import link_latest


def test_latest_points_at_the_newest_run_and_moves_on(tmp_path):
    runs = tmp_path / "logs" / "quickstart" / "runs"
    first, second = runs / "2026-01-01_00-00-00", runs / "2026-01-01_00-00-01"
    for run in (first, second):
        (run / "checkpoints").mkdir(parents=True)
    assert link_latest(first) == runs / "latest"
    assert (runs / "latest").resolve() == first.resolve()
    link_latest(second)
    assert (runs / "latest").resolve() == second.resolve()
    assert (runs / "latest").readlink().name == second.name  # relative: the tree can move
    assert sorted(p.name for p in runs.iterdir()) == [first.name, second.name, "latest"]


def test_no_link_for_a_sweep_job_or_the_link_itself(tmp_path):
    job = tmp_path / "logs" / "train" / "multiruns" / "2026-01-01_00-00-00" / "0"
    job.mkdir(parents=True)
    assert link_latest(job) is None
    latest = tmp_path / "runs" / "latest"
    latest.mkdir(parents=True)
    assert link_latest(latest) is None
