"""Optimizers by the course's names, built on optax, with the course's learning-rate decay.

`make_optimizer("adam", learning_rate=5e-3, lr_decay=0.95, steps_per_epoch=4)` is the
course's `update_rule="adam", optim_config={"learning_rate": 5e-3}, lr_decay=0.95`: the
rate is multiplied by `lr_decay` after every epoch (a staircase exponential schedule).
Both trainers build their optimizers here.
"""

from __future__ import annotations

from typing import Any, Callable

import optax

UPDATE_RULES = ("sgd", "sgd_momentum", "adam", "adamw", "rmsprop")
"""The `update_rule` names `make_optimizer` takes (the course's four, and AdamW)."""

# The course's per-rule hyper-parameter names and defaults (optim_config keys).
_DEFAULT_CONFIG: dict[str, dict[str, float]] = {
    "sgd": {},
    "sgd_momentum": {"momentum": 0.9},
    "adam": {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
    "adamw": {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "weight_decay": 1e-2},
    "rmsprop": {"decay_rate": 0.99, "epsilon": 1e-8},
}


def epoch_decay_schedule(learning_rate: float, lr_decay: float, steps_per_epoch: int) -> optax.Schedule:
    """Learning rate `learning_rate * lr_decay ** (step // steps_per_epoch)`."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    if not lr_decay > 0:
        raise ValueError(f"lr_decay must be > 0, got {lr_decay}")
    return optax.exponential_decay(
        init_value=learning_rate, transition_steps=steps_per_epoch, decay_rate=lr_decay, staircase=True
    )


def make_optimizer(
    update_rule: str,
    learning_rate: float | optax.Schedule,
    *,
    lr_decay: float = 1.0,
    steps_per_epoch: int = 1,
    clip_norm: float | None = None,
    **config: Any,
) -> optax.GradientTransformation:
    """An optax optimizer for one of `UPDATE_RULES`.

    Inputs:
      update_rule: "sgd", "sgd_momentum", "adam", "adamw" or "rmsprop".
      learning_rate: a float, or an optax schedule (then `lr_decay` must stay 1.0).
      lr_decay: multiply a float learning rate by this after every epoch of
        `steps_per_epoch` steps.
      clip_norm: if given, clip the gradients' global norm to this before the update.
      config: the course's optim_config keys for the rule (momentum; beta1, beta2, epsilon;
        decay_rate; weight_decay). Unknown keys are an error.
    """
    if update_rule not in _DEFAULT_CONFIG:
        raise ValueError(f"update_rule must be one of {UPDATE_RULES}, got {update_rule!r}")
    unknown = set(config) - set(_DEFAULT_CONFIG[update_rule])
    if unknown:
        raise ValueError(
            f"unknown optim_config keys for {update_rule!r}: {sorted(unknown)}; "
            f"expected some of {sorted(_DEFAULT_CONFIG[update_rule])}"
        )
    hyper = {**_DEFAULT_CONFIG[update_rule], **config}
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be > 0 or None, got {clip_norm}")

    rate: float | Callable = learning_rate
    if callable(learning_rate):
        if lr_decay != 1.0:
            raise ValueError("give either a learning-rate schedule or lr_decay, not both")
    else:
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
        if lr_decay != 1.0:
            rate = epoch_decay_schedule(learning_rate, lr_decay, steps_per_epoch)

    if update_rule == "sgd":
        optimizer = optax.sgd(rate)
    elif update_rule == "sgd_momentum":
        optimizer = optax.sgd(rate, momentum=hyper["momentum"])
    elif update_rule == "adam":
        optimizer = optax.adam(rate, b1=hyper["beta1"], b2=hyper["beta2"], eps=hyper["epsilon"])
    elif update_rule == "adamw":
        optimizer = optax.adamw(
            rate, b1=hyper["beta1"], b2=hyper["beta2"], eps=hyper["epsilon"], weight_decay=hyper["weight_decay"]
        )
    else:  # rmsprop, as the course: w -= lr * dw / (sqrt(cache) + eps)
        optimizer = optax.rmsprop(rate, decay=hyper["decay_rate"], eps=hyper["epsilon"], eps_in_sqrt=False)

    if clip_norm is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), optimizer)
    return optimizer
