"""Where the data sets are: one rule for every loader and for `jaxseq data download`.

A data set lives in a folder named after it (`cola`, `coco_captioning`, ...) under a data
root. The folder used is, in this order:

1. the folder given (`--data-dir DIR` on the command line, `data_dir` / `base_dir` in the
   library), alone: a folder given that lacks the data is an error, never replaced by another;
2. `$JAXSEQ_DATA/<name>`, when the variable is set;
3. `~/.cache/jaxseq/<name>`, where `jaxseq data download` writes by default;
4. `../shared/data/<name>`, from the working directory, then next to the repository that
   holds this package (the same folder when run from the repository's root is listed once).

The first of 2-4 that holds the data set's required files is used. `jaxseq data download`
writes to `--root`, else the first of 2-3 (`download_root()`), so what it fetched is found.
A loader states its data set's folder name and the files that must be there:

    folder = find_data_dir("cola", find_cola_files, data_dir, title="CoLA", download="cola")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

ENV_VAR = "JAXSEQ_DATA"
SHARED_DATA = Path("shared") / "data"  # under the parent of the working directory / repository
REPOSITORY = Path(__file__).resolve().parents[2]  # the folder holding the jaxseq package

Requirement = Sequence[str] | Callable[[Path], object]


def download_root() -> Path:
    """The root `jaxseq data download` writes to when no `--root` is given: `$JAXSEQ_DATA`
    if set, else `~/.cache/jaxseq`."""
    value = os.environ.get(ENV_VAR)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "jaxseq"


def data_roots() -> list[Path]:
    """The data roots searched, in order: `$JAXSEQ_DATA` (if set), `~/.cache/jaxseq`, then
    `../shared/data` from the working directory and from the repository holding this
    package; each folder once."""
    roots = [download_root()]
    if os.environ.get(ENV_VAR):
        roots.append(Path.home() / ".cache" / "jaxseq")
    roots.append(Path.cwd().parent / SHARED_DATA)
    roots.append(REPOSITORY.parent / SHARED_DATA)
    unique, seen = [], set()
    for root in roots:
        key = os.path.normpath(os.path.abspath(root))
        if key not in seen:
            seen.add(key)
            unique.append(root)
    return unique


def candidate_dirs(name: str) -> list[Path]:
    """The folders data set `name` is looked for in when none is given: `<root>/<name>` for
    each of `data_roots()`."""
    return [root / name for root in data_roots()]


def missing(folder: Path, required: Requirement) -> str | None:
    """Why `folder` does not hold the data set (one short phrase), or None if it does.
    `required`: the files (paths relative to the folder) that must all be regular files, or a
    function of the folder that raises FileNotFoundError saying what is missing."""
    if not folder.is_dir():
        return "no such folder"
    if callable(required):
        try:
            required(folder)
        except FileNotFoundError as error:
            return str(error)
        return None
    for name in required:
        if not (folder / name).is_file():
            return f"{name} not found"
    return None


def find_data_dir(name: str, required: Requirement, data_dir: str | os.PathLike | None = None, *,
                  title: str | None = None, argument: str = "data_dir", download: str | None = None) -> Path:
    """The folder of data set `name` by the module's rule: `data_dir` if given (it must hold
    the data), else the first of `candidate_dirs(name)` that holds it.

    Inputs:
      name: the data set's folder name, e.g. "cola", "coco_captioning".
      required: the files that must be there (relative paths, all needed), or a function of
        a folder raising FileNotFoundError (e.g. a loader's layout check); see `missing`.
      title: the data set's name in messages (default: `name`).
      argument: how the caller's user gives a folder, named in the error: "--data-dir" on
        the command line, the keyword ("data_dir", "base_dir") in the library.
      download: the name `jaxseq data download` fetches it by, if it does (the error says so).
    Raises: FileNotFoundError, one line: the folder given and what it lacks, or every
      folder looked in (each once) with what each lacks and how to provide the data.
    """
    title = title or name
    fetch = f", or fetch it with `jaxseq data download {download}`" if download else ""
    if data_dir is not None:
        folder = Path(data_dir)
        reason = missing(folder, required)
        if reason is not None:
            raise FileNotFoundError(f"{title} not found in {folder}: {reason}; pass the folder that holds it "
                                    f"as {argument}{fetch}")
        return folder
    looked = []
    for folder in candidate_dirs(name):
        reason = missing(folder, required)
        if reason is None:
            return folder
        looked.append(f"{folder} ({reason})")
    raise FileNotFoundError(f"{title} not found; looked in {'; '.join(looked)}. "
                            f"Pass {argument} or set ${ENV_VAR}{fetch}")
