"""The one atomic writer, the one shard store and the one checkpoint reader."""

import numpy as np
import pytest
import torch

from ddpm.errors import CheckpointError
from ddpm.io import ShardStore, atomic_write, atomic_write_json, read_checkpoint, read_lightning_checkpoint


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = atomic_write_json(tmp_path / "report.json", {"fid": 3.17, "nan": float("nan")})
    assert path.read_text().split() == ["{", '"fid":', "3.17,", '"nan":', "null", "}"]

    def crash(f):
        f.write(b"half a rep")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert '"fid": 3.17' in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def _store(tmp_path, fingerprint="fp", check=None):
    return ShardStore(tmp_path, fingerprint, num_items=5, shard_size=2, prefix="x", check=check)


def test_shards_round_trip_and_only_their_own_fingerprint_counts(tmp_path):
    store = _store(tmp_path)
    assert store.ranges == [range(0, 2), range(2, 4), range(4, 5)] and store.shards_of_rank(1, 2) == [1]
    store.write(2, {"values": np.array([7.0])})
    assert store.missing(range(3)) == [0, 1]
    np.testing.assert_array_equal(store.read(2)["values"], [7.0])
    assert _store(tmp_path, fingerprint="other").read(2) is None  # another run's shard: recomputed
    store.path(2).write_bytes(store.path(2).read_bytes()[:40])  # killed mid-copy
    assert store.read(2) is None
    with pytest.raises(RuntimeError, match="missing"):
        list(store.iter_shards([2]))


def test_a_shard_failing_its_check_is_refused_on_write_and_recomputed_on_read(tmp_path):
    def one_row_per_item(items, arrays):
        if arrays["values"].shape[0] != len(items):
            raise ValueError("one row per item")

    store = _store(tmp_path, check=one_row_per_item)
    with pytest.raises(ValueError, match="one row"):
        store.write(0, {"values": np.zeros(3)})
    _store(tmp_path).write(0, {"values": np.zeros(3)})  # written without the check
    assert store.read(0) is None and not store.has(0)
    with pytest.raises(ValueError, match="reserved"):
        store.write(0, {"indices": np.zeros(2)})


class _RunsCode:
    def __reduce__(self):
        return (print, ("this ran while loading",))


def test_the_reader_refuses_pickled_objects_and_names_bad_files_in_one_line(tmp_path, capsys):
    torch.save({"state_dict": {"w": torch.ones(2)}, "ddpm_config": {}}, tmp_path / "ok.ckpt")
    assert torch.equal(read_lightning_checkpoint(tmp_path / "ok.ckpt")["state_dict"]["w"], torch.ones(2))
    torch.save({"state_dict": {}, "x": _RunsCode()}, tmp_path / "evil.ckpt")
    (tmp_path / "garbage.ckpt").write_bytes(b"garbage")
    torch.save({"weights": torch.ones(1)}, tmp_path / "plain.ckpt")
    cases = {"evil": "pickled Python objects", "garbage": "truncated or corrupt", "missing": "does not exist"}
    for name, message in cases.items():
        with pytest.raises(CheckpointError, match=message) as info:
            read_checkpoint(tmp_path / f"{name}.ckpt")
        assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="not a Lightning checkpoint"):
        read_lightning_checkpoint(tmp_path / "plain.ckpt")
    assert "this ran" not in capsys.readouterr().out
