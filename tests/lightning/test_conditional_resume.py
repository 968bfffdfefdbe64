"""Class-conditional training (labels + label dropout from the reseeded global RNG) resumes exactly."""

from tests.lightning.test_training import _assert_same_state, _run

CONDITIONAL = ["data.class_labels=true", "model.num_classes=10", "model.class_dropout=0.5"]


def test_conditional_resume_repeats_uninterrupted_training_exactly(tmp_path):
    """8 steps straight == 3 steps, save (mid-epoch), resume for the rest: weights (class embedding
    included), EMA and Adam state; with p=0.5 label dropout every step drops other labels."""
    checkpointing = [
        "+callbacks.ckpt._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        f"+callbacks.ckpt.dirpath={tmp_path / 'ckpts'}",
        "+callbacks.ckpt.every_n_train_steps=3",
        "+callbacks.ckpt.save_top_k=-1",
        "+callbacks.ckpt.filename=half",
    ]
    straight = _run(tmp_path, "straight", [*CONDITIONAL, "trainer.max_steps=8", *checkpointing])
    ckpt = tmp_path / "ckpts" / "half.ckpt"
    resumed = _run(tmp_path, "resumed", [*CONDITIONAL, "trainer.max_steps=8", f"ckpt_path={ckpt}"])
    assert "net.class_embedding.weight" in straight["module"].state_dict()
    _assert_same_state(straight, resumed)
    # the test can fail: the labels and their dropout change the weights
    key = "net.temb.dense.0.weight"
    no_drop = _run(tmp_path, "no_dropout", [*CONDITIONAL, "model.class_dropout=0.0", "trainer.max_steps=8"])
    assert not straight["module"].state_dict()[key].equal(no_drop["module"].state_dict()[key])
