"""Reading datasets from HDF5 files that may lie: every error one line naming file and key.

An HDF5 file controls more than its bytes. A chunked, compressed or resizable dataset can
declare a shape of terabytes in a file of kilobytes (it reads back as its fill value), and
a dataset can keep its data in other files: "external storage" (raw bytes of any file,
such as /etc/services), a "virtual dataset" (pieces of other HDF5 files), or the key can be
an "external link" (a dataset of another HDF5 file, which h5py opens and reads as if it
were this file's). `hdf5_dataset` hands out a dataset only once it is known to be safe to
read: it is reached without leaving the file (soft links inside it are followed), its data
lives in the file itself, and it declares at most `MAX_EXPANSION` times the bytes the file stores for it
(datasets declaring under `EXPANSION_FLOOR` bytes are not checked). `read_dataset` reads
it, turning h5py's errors on damaged files and a MemoryError into ValueErrors.

h5py is imported when a file is opened, so importing this module is cheap.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = ["EXPANSION_FLOOR", "MAX_EXPANSION", "hdf5_dataset", "open_hdf5", "read_dataset"]

MAX_EXPANSION = 100  # declared bytes / stored bytes; gzip on real features gives a few
EXPANSION_FLOOR = 1 << 20  # 1 MiB
MAX_LINK_HOPS = 16  # soft links followed from a key (a loop of them is refused)

# What h5py raises from its C layer on damaged files (checksums, B-trees, headers).
_H5PY_ERRORS = (OSError, RuntimeError, KeyError, TypeError, ValueError)


class _Storage(NamedTuple):
    """What a dataset declares and where its bytes are, read before its data."""

    shape: tuple[int, ...]
    dtype: np.dtype
    external: list | None
    virtual: bool
    stored: int


def open_hdf5(path: str | os.PathLike):
    """`h5py.File(path, "r")` (a context manager); a file that is not HDF5 is a ValueError."""
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path}: not a readable HDF5 file ({error})") from None


def _corrupt(path: Path, key: str, error: BaseException) -> ValueError:
    return ValueError(f"{path}: corrupt HDF5 file, reading key {key!r} failed ({error})")


def _link_problem(handle: Any, key: str) -> str | None:
    """Why `key` must not be followed (an external link, somewhere along its soft links; a
    dangling soft link; too many hops), or None. Links are read, never followed, here."""
    import h5py

    name = key
    for _ in range(MAX_LINK_HOPS):
        link = handle.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            return (f"is a link to {link.filename}:{link.path} (an HDF5 external link, data from another "
                    "file); refusing to read it")
        if not isinstance(link, h5py.SoftLink):
            return None  # a hard link (an object of this file), or nothing: reported by the caller
        name = link.path
        if handle.get(name, getlink=True) is None:
            return f"is a link to {name}, which is not in the file"
    return f"is a chain of more than {MAX_LINK_HOPS} soft links; refusing to follow it"


def hdf5_dataset(handle: Any, path: str | os.PathLike, key: str):
    """The dataset `key` of the open file `handle` (from `path`), once it is safe to read.

    Raises ValueError naming file and key if the key is missing or not a dataset, if it is
    an external link to another file (soft links inside the file are followed, not to one),
    if the dataset keeps its data in other files (external storage, virtual dataset), or if
    it declares more than `MAX_EXPANSION` times the bytes the file stores for it.
    """
    import h5py

    path = Path(path)
    try:
        problem = _link_problem(handle, key)
    except _H5PY_ERRORS as error:
        raise _corrupt(path, key, error) from None
    if problem:
        raise ValueError(f"{path}: key {key!r} {problem}")
    try:
        present = key in handle
        names = sorted(handle.keys())
        node = handle[key] if present else None
        storage = None
        if isinstance(node, h5py.Dataset):
            storage = _Storage(tuple(node.shape), node.dtype, node.external, node.is_virtual,
                               node.id.get_storage_size())
    except _H5PY_ERRORS as error:
        raise _corrupt(path, key, error) from None
    if not present:
        raise ValueError(f"{path}: missing key {key!r} (found {names})")
    if storage is None:
        raise ValueError(f"{path}: key {key!r} is not a dataset")
    if storage.external:
        files = ", ".join(str(entry[0]) for entry in storage.external)
        raise ValueError(f"{path}: key {key!r} keeps its data in another file ({files}; "
                         "HDF5 external storage); refusing to read it")
    if storage.virtual:
        raise ValueError(f"{path}: key {key!r} is an HDF5 virtual dataset (its data comes "
                         "from other files); refusing to read it")
    declared = int(np.prod(storage.shape, dtype=object)) * storage.dtype.itemsize
    if declared >= EXPANSION_FLOOR and declared > MAX_EXPANSION * storage.stored:
        raise ValueError(
            f"{path}: key {key!r} declares shape {storage.shape} {storage.dtype} "
            f"({declared:,} bytes) but stores only {storage.stored:,} bytes; refusing data "
            f"that expands more than {MAX_EXPANSION} times its stored size")
    return node


def read_dataset(dataset: Any, path: str | os.PathLike, key: str) -> np.ndarray:
    """All of `dataset` (from `hdf5_dataset`) as a NumPy array; ValueError naming file and
    key if the file is damaged or the array does not fit in memory."""
    try:
        return np.asarray(dataset)
    except MemoryError:
        raise ValueError(f"{path}: key {key!r} of shape {dataset.shape} {dataset.dtype} does "
                         "not fit in memory") from None
    except _H5PY_ERRORS as error:
        raise _corrupt(Path(path), key, error) from None
