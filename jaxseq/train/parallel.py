"""Data parallelism with JAX's own sharding: a 1-D device mesh over the batch axis.

    parallel = DataParallel.create(num_devices=8)     # or DataParallel.create() for all
    state = parallel.replicate(state)                 # parameters, optimizer state: copies
    data = parallel.put_data(data)                    # the data set every step samples from
    ...inside the jitted step: batch = parallel.shard_batch(batch)

Parameters and optimizer state are replicated; each batch is split along its first axis
over the mesh's "data" axis with `NamedSharding`, so XLA partitions the step and inserts
the gradient all-reduce itself — no `pmap`, no hand-written collectives, the step stays
one jitted function, and the global batch is what the user asked for (it must divide by
the device count).

Several processes (hosts) run the same program after `initialize_distributed`; the mesh
then spans every process's devices, `jax.devices()` lists them all, and `put_data` builds
global arrays from what each process loaded (`jax.make_array_from_process_local_data`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


@dataclass(frozen=True)
class DataParallel:
    """A mesh of devices along one "data" axis and the shardings a trainer needs."""

    mesh: Mesh

    @classmethod
    def create(cls, num_devices: int | None = None) -> "DataParallel":
        """A mesh over the first `num_devices` devices (all of them when None)."""
        available = jax.devices()
        count = len(available) if num_devices is None else num_devices
        if not 1 <= count <= len(available):
            raise ValueError(
                f"devices must be between 1 and the {len(available)} available "
                f"{available[0].platform.upper()} device(s), got {num_devices}"
            )
        # Auto axes: XLA propagates shardings from the constraints we place on batches.
        mesh = jax.make_mesh((count,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=available[:count])
        return cls(mesh)

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    @property
    def batch_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))

    def check_batch_size(self, batch_size: int) -> None:
        """The global batch must split evenly over the devices."""
        if batch_size % self.num_devices:
            raise ValueError(
                f"batch size {batch_size} does not divide by the {self.num_devices} devices; "
                f"use a multiple of {self.num_devices}"
            )

    def replicate(self, tree: Any) -> Any:
        """Place a pytree (params, optimizer state, PRNG key) on every device of the mesh."""
        return self._put(tree, self.replicated)

    def put_data(self, tree: Any) -> Any:
        """Place the data set (a pytree of arrays) where every step can sample from it.

        Each process passes the full arrays it loaded; they are replicated, so a batch of
        any rows can be gathered on device and then split over the mesh by `shard_batch`.
        """
        return self._put(tree, self.replicated)

    def shard_batch(self, tree: Any) -> Any:
        """Inside a jitted step: split every array of the batch along axis 0 over the mesh."""
        return jax.lax.with_sharding_constraint(tree, self.batch_sharding)

    def _put(self, tree: Any, sharding: NamedSharding) -> Any:
        if jax.process_count() == 1:
            return jax.device_put(tree, sharding)
        return jax.tree_util.tree_map(
            lambda leaf: jax.make_array_from_process_local_data(sharding, np.asarray(leaf)), tree
        )


def initialize_distributed(coordinator: str, num_processes: int, process_id: int) -> None:
    """Join a multi-process run: `jax.distributed.initialize` with a coordinator HOST:PORT.

    Call before any other JAX call. On CPU, collectives go through Gloo (set here), so
    several processes on one machine or several machines work without accelerators.
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}")
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"coordinator must be HOST:PORT, got {coordinator!r}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)


class Placement(NamedTuple):
    """Where a trainer's arrays live: one device (`parallel` None) or a data-parallel mesh.

    `Placement.create(devices, batch_size)`: devices None is one device; else a
    `DataParallel` over that many devices, batch_size checked to divide by it.
    """

    parallel: DataParallel | None

    @classmethod
    def create(cls, devices: int | None, batch_size: int) -> "Placement":
        if devices is None:
            return cls(None)
        parallel = DataParallel.create(devices)
        parallel.check_batch_size(batch_size)
        return cls(parallel)

    def state(self, tree: Any) -> Any:
        """Parameters, optimizer state, keys: on the device, or replicated over the mesh."""
        return self.parallel.replicate(tree) if self.parallel is not None else jax.device_put(tree)

    def data(self, tree: Any) -> Any:
        """A data set: on the device, or split over the mesh along its first axis."""
        return self.parallel.put_data(tree) if self.parallel is not None else jax.device_put(tree)


def any_process(flag: bool) -> bool:
    """Whether `flag` is True in any process of the run (a small all-gather; every process must
    call it at the same point). One process: the flag itself."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.asarray(multihost_utils.process_allgather(np.int32(flag))).max() > 0)
