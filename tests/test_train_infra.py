"""Optimizer factory and atomic checkpoints (jaxseq.train.optim, jaxseq.train.checkpoint)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxseq.train import (
    best_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    make_optimizer,
    save_checkpoint,
)
from jaxseq.train.checkpoint import TEMP_PREFIX


def test_lr_decay_multiplies_rate_after_every_epoch():
    optimizer = make_optimizer("sgd", 1.0, lr_decay=0.5, steps_per_epoch=3)
    params = jnp.zeros(())
    state = optimizer.init(params)
    steps = []
    for _ in range(7):
        updates, state = optimizer.update(jnp.ones(()), state, params)
        steps.append(-float(updates))
    np.testing.assert_allclose(steps, [1, 1, 1, 0.5, 0.5, 0.5, 0.25])


def test_course_rmsprop_and_adam_first_steps():
    grad = jnp.array([0.5, -2.0])
    updates, _ = make_optimizer("rmsprop", 0.1).update(grad, make_optimizer("rmsprop", 0.1).init(grad))
    cache = 0.01 * grad**2
    np.testing.assert_allclose(updates, -0.1 * grad / (jnp.sqrt(cache) + 1e-8), rtol=1e-6)
    updates, _ = make_optimizer("adam", 0.1).update(grad, make_optimizer("adam", 0.1).init(grad))
    np.testing.assert_allclose(updates, -0.1 * jnp.sign(grad), rtol=1e-5)  # bias-corrected first step


def test_optimizer_arguments_are_checked():
    with pytest.raises(ValueError, match="update_rule must be one of"):
        make_optimizer("adagrad", 0.1)
    with pytest.raises(ValueError, match="unknown optim_config keys for 'adam': \\['momentum'\\]"):
        make_optimizer("adam", 0.1, momentum=0.9)
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        make_optimizer("sgd", 0.0)
    with pytest.raises(ValueError, match="not both"):
        make_optimizer("sgd", optax.constant_schedule(0.1), lr_decay=0.9)


def test_clip_norm_bounds_the_update():
    optimizer = make_optimizer("sgd", 1.0, clip_norm=1.0)
    updates, _ = optimizer.update(jnp.array([30.0, 40.0]), optimizer.init(jnp.zeros(2)))
    np.testing.assert_allclose(updates, [-0.6, -0.8], rtol=1e-6)


def _state(seed):
    params = {"W": jnp.full((2, 3), float(seed)), "b": jnp.arange(3.0)}
    optimizer = make_optimizer("adam", 1e-3)
    return {"params": params, "opt_state": optimizer.init(params), "rng": jax.random.PRNGKey(seed)}


def test_checkpoint_round_trip_with_optimizer_state(tmp_path):
    state = _state(1)
    path = save_checkpoint(tmp_path, 10, state, metadata={"config": {"hidden": 3}}, metric=0.5)
    restored, meta = load_checkpoint(path, _state(0))
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(restored)):
        np.testing.assert_array_equal(a, b)
    assert meta["step"] == 10 and meta["config"] == {"hidden": 3} and meta["metric"] == 0.5


def test_keeps_last_k_and_best(tmp_path):
    metrics = {1: 0.1, 2: 0.9, 3: 0.2, 4: 0.3, 5: 0.25}
    for step, metric in metrics.items():
        save_checkpoint(tmp_path, step, _state(step), metric=metric, keep=2)
    steps = [int(p.name.split("-")[1]) for p in list_checkpoints(tmp_path)]
    assert steps == [2, 4, 5]
    assert latest_checkpoint(tmp_path).name.endswith("00000005")
    assert best_checkpoint(tmp_path).name.endswith("00000002")


def test_partial_checkpoints_are_never_picked_up(tmp_path):
    save_checkpoint(tmp_path, 1, _state(1))
    # A crash mid-write leaves a temporary folder and maybe a folder without its state file.
    (tmp_path / (TEMP_PREFIX + "crash")).mkdir()
    (tmp_path / (TEMP_PREFIX + "crash") / "state.msgpack").write_bytes(b"\x00partial")
    (tmp_path / "ckpt-00000009").mkdir()
    (tmp_path / "ckpt-00000009" / "meta.json").write_text("{}")
    assert latest_checkpoint(tmp_path).name == "ckpt-00000001"
    save_checkpoint(tmp_path, 2, _state(2))
    assert not list(tmp_path.glob(TEMP_PREFIX + "*"))  # cleaned by the next save


def test_a_write_that_fails_gives_its_space_back_and_keeps_the_checkpoints_before(tmp_path, monkeypatch):
    import errno

    from jaxseq.train import checkpoint

    save_checkpoint(tmp_path, 1, _state(1))
    real_write = checkpoint._write_file

    def disk_full_at_meta(path, data):
        if path.name == checkpoint.META_FILE:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, data)

    monkeypatch.setattr(checkpoint, "_write_file", disk_full_at_meta)
    with pytest.raises(OSError, match="No space left on device"):
        save_checkpoint(tmp_path, 2, _state(2))
    assert not list(tmp_path.glob(TEMP_PREFIX + "*"))  # the half-written state file is gone already
    assert [path.name for path in list_checkpoints(tmp_path)] == ["ckpt-00000001"]


def test_corrupt_or_mismatched_checkpoints_are_rejected(tmp_path):
    path = save_checkpoint(tmp_path, 1, _state(1))
    wrong = {**_state(0), "params": {"W": jnp.zeros((3, 3)), "b": jnp.zeros(3)}}
    with pytest.raises(ValueError, match=r"\['params'\]\['W'\] has shape \(2, 3\), expected \(3, 3\)"):
        load_checkpoint(path, wrong)
    (path / "state.msgpack").write_bytes(os.urandom(64))
    with pytest.raises(ValueError, match="state.msgpack"):
        load_checkpoint(path, _state(0))
    (path / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match="meta.json: not valid JSON"):
        load_checkpoint(path, _state(0))
    (path / "meta.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="meta.json: expected a JSON object, got list"):
        load_checkpoint(path, _state(0))


class _RunsCodeWhenUnpickled:
    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))  # unpickling would create the sentinel file


def test_hostile_checkpoint_files_are_rejected_without_running_them(tmp_path):
    import msgpack
    import pickle

    path = save_checkpoint(tmp_path, 1, _state(1))
    sentinel = tmp_path / "code-ran"
    object_array = msgpack.ExtType(1, msgpack.packb((list((2,)), b"O", b"\x00" * 16)))  # flax's ndarray ext
    hostile = {
        "a pickle whose loading runs code": pickle.dumps({"params": _RunsCodeWhenUnpickled(sentinel)}),
        "an object-dtype array": msgpack.packb({"params": {"W": object_array, "b": object_array}}),
        "a state that is not a mapping": msgpack.packb([1, 2, 3]),
        "a truncated state": (path / "state.msgpack").read_bytes()[:40],
    }
    for what, payload in hostile.items():
        (path / "state.msgpack").write_bytes(payload)
        with pytest.raises(ValueError, match=r"checkpoint .*state.msgpack: "):
            load_checkpoint(path, _state(0))
        assert not sentinel.exists(), what
