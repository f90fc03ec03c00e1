"""Building blocks any trainer can use: the train state, one jitted step, device-side batches.

    state = init_train_state(params, optimizer, seed)
    step = make_train_step(loss_fn, optimizer, sample_batch)
    state, loss = step(state, data)          # one compiled call: sample, forward, loss,
                                             # backward, optimizer update

`data` is any pytree of arrays already on the device (put there once with
`jax.device_put`); `sample_batch(key, data) -> batch` draws a batch from it inside the
compiled step (e.g. with `random_rows`), so no batch ever crosses from the host.
`loss_fn(params, batch) -> scalar`. The random key lives in the state, so a run restored
from a checkpoint of the state continues with exactly the batches it would have drawn.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxseq.train.parallel import DataParallel


class TrainState(NamedTuple):
    """Everything a training run carries from step to step (a pytree; checkpointable).

    step: () int32, optimizer steps taken; params; opt_state: the optax state;
    key: (2,) uint32 raw PRNG key for the batches still to be drawn.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    key: jax.Array


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite."""


def init_train_state(params: Any, optimizer: optax.GradientTransformation, seed: int | jax.Array) -> TrainState:
    """A fresh TrainState; `seed` is an int or a raw (2,) uint32 key."""
    key = jax.random.PRNGKey(seed) if isinstance(seed, int) else jnp.asarray(seed, jnp.uint32)
    return TrainState(jnp.int32(0), params, optimizer.init(params), key)


def checkpoint_tree(state: TrainState, extra: dict[str, Any]) -> Any:
    """What a checkpoint of a training run holds: the TrainState, with the trainer's extra
    state (e.g. the classifier's shuffling key) beside its fields (a dict), or the TrainState
    alone when there is none."""
    return {**state._asdict(), **extra} if extra else state


def checkpoint_template(params: Any, optimizer: optax.GradientTransformation,
                        extra: dict[str, Any] | None = None) -> Any:
    """Shapes and dtypes (`jax.ShapeDtypeStruct`s) of everything a checkpoint of a run with
    `params` and `optimizer` holds: the template `load_checkpoint` needs even to use the
    parameters alone, since the file holds the optimizer's state too (Adam's two moments
    make it about three times the parameters). `params`, `extra`: pytrees of arrays or
    ShapeDtypeStructs (extra: the trainer's `extra_state`)."""
    return jax.eval_shape(lambda p, e: checkpoint_tree(init_train_state(p, optimizer, 0), e), params, extra or {})


def random_rows(key: jax.Array, num_rows: int, batch_size: int) -> jax.Array:
    """batch_size row indices drawn uniformly with replacement from [0, num_rows), on device.

    Returns: (batch_size,) int32.
    """
    return jax.random.randint(key, (batch_size,), 0, num_rows, dtype=jnp.int32)


def make_train_step(
    loss_fn: Callable[[Any, Any], jax.Array],
    optimizer: optax.GradientTransformation,
    sample_batch: Callable[[jax.Array, Any], Any],
    *,
    parallel: DataParallel | None = None,
    has_aux: bool = False,
) -> Callable[[TrainState, Any], tuple]:
    """The whole training step as one jitted function `(state, data) -> (state, loss)`.

    It splits the state's key, draws `batch = sample_batch(subkey, data)`, takes
    `jax.value_and_grad(loss_fn)(params, batch)`, and applies the optax update. The loss
    returned is the batch's loss before the update. With `has_aux`, `loss_fn` returns
    `(loss, aux)` and the step `(state, loss, aux)`: what the batch carries on to the next
    step, such as a language model's recurrent state (never differentiated through).

    With `parallel` (a `DataParallel` mesh; state and data placed with its `replicate` /
    `put_data`), the batch is split over the devices along its first axis and XLA inserts
    the gradient all-reduce: the same step, data-parallel. The new state is kept
    replicated, so any one process can checkpoint it.
    """

    def step(state: TrainState, data: Any) -> tuple[TrainState, jax.Array]:
        key, batch_key = jax.random.split(state.key)
        batch = sample_batch(batch_key, data)
        if parallel is not None:
            batch = parallel.shard_batch(batch)
        value, grads = jax.value_and_grad(loss_fn, has_aux=has_aux)(state.params, batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        state = TrainState(state.step + 1, params, opt_state, key)
        if parallel is not None:  # left to itself, XLA may split the (2,) key over a 2-device mesh
            state = jax.lax.with_sharding_constraint(state, parallel.replicated)
        return (state, *value) if has_aux else (state, value)

    return jax.jit(step)


def losses_to_host(losses: list[jax.Array], first_step: int) -> list[float]:
    """Device loss scalars to Python floats (one transfer), checked for NaN/inf.

    `first_step` is the global step of `losses[0]`, for the error message.
    Raises: NonFiniteLossError naming the first step whose loss is not finite.
    """
    if not losses:
        return []
    values = np.asarray(jax.device_get(jnp.stack(losses)), dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise NonFiniteLossError(f"training loss became {values[bad[0]]} at step {first_step + int(bad[0])}")
    return values.tolist()
