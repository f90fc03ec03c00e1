"""Write the five walk-through notebooks from the cell sources in `notebooks/sources/`.

The notebooks are generated, so their code can be read and reviewed as plain Python:
each source file is in the "percent" format, cells separated by lines that start with
`# %%`:

    # %% [markdown]
    # ## A markdown cell: every line is commented out with "# " (or is a bare "#"),
    # so the source file stays valid Python.
    # %%
    code ...
    # %% tags=gradcheck,reference
    code whose outputs the tests inspect ...

Run `python notebooks/build_notebooks.py` after editing a source; the notebooks come out
without outputs or execution counts. `tests/test_notebooks.py` checks that the committed
notebooks hold the cells this script writes and no outputs, then executes them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "sources"
NOTEBOOKS = {
    "RNN_Captioning.ipynb": "rnn_captioning.py",
    "LSTM_Captioning.ipynb": "lstm_captioning.py",
    "Transformer_Classification.ipynb": "transformer_classification.py",
    "Recurrent_Layers.ipynb": "recurrent_layers.py",
    "Language_Modeling.ipynb": "language_modeling.py",
}
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def parse_cells(text: str) -> list[nbformat.NotebookNode]:
    """Percent-format text -> notebook cells (markdown or code, with optional tags)."""
    cells: list[nbformat.NotebookNode] = []
    header: str | None = None
    lines: list[str] = []

    def flush() -> None:
        if header is None:
            if "".join(lines).strip():
                raise ValueError("text before the first '# %%' cell marker")
            return
        source = "\n".join(lines).strip("\n")
        if header.startswith("[markdown]"):
            text_lines = []
            for line in source.splitlines():
                if line != "#" and not line.startswith("# "):
                    raise ValueError(f"markdown line not commented out with '# ': {line!r}")
                text_lines.append(line[2:])
            cells.append(nbformat.v4.new_markdown_cell("\n".join(text_lines)))
            return
        cell = nbformat.v4.new_code_cell(source)
        options = header.split()
        for option in options:
            key, _, value = option.partition("=")
            if key != "tags" or not value:
                raise ValueError(f"unknown cell option {option!r} (only tags=a,b)")
            cell.metadata["tags"] = value.split(",")
        cells.append(cell)

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            header, lines = line[len("# %%"):].strip(), []
        else:
            lines.append(line)
    flush()
    return cells


def build(name: str) -> nbformat.NotebookNode:
    """The notebook `name` as generated from its source (no outputs)."""
    source = (SOURCES / NOTEBOOKS[name]).read_text(encoding="utf-8")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = parse_cells(source)
    notebook.metadata["kernelspec"] = dict(KERNELSPEC)
    notebook.metadata["language_info"] = {"name": "python"}
    # Stable cell ids, so regenerating an unchanged source gives an identical file.
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{index:03d}"
    nbformat.validate(notebook)
    return notebook


def render(notebook: nbformat.NotebookNode) -> str:
    return nbformat.writes(notebook) + "\n"


def parse_args(argv: list[str]) -> list[str]:
    """The notebook names to write (all when none is given); `--help` prints the usage."""
    parser = argparse.ArgumentParser(
        prog="build_notebooks.py",
        description="Write the walk-through notebooks from their cell sources in notebooks/sources/ "
                    "(without outputs).")
    parser.add_argument("names", nargs="*", metavar="NOTEBOOK",
                        help=f"notebooks to write (default: all): {', '.join(NOTEBOOKS)}")
    names = parser.parse_args(argv).names
    unknown = [name for name in names if name not in NOTEBOOKS]
    if unknown:
        parser.error(f"unknown notebook {', '.join(unknown)}; choose from {', '.join(NOTEBOOKS)}")
    return names


def main(argv: list[str]) -> int:
    names = parse_args(argv) or list(NOTEBOOKS)
    for name in names:
        path = HERE / name
        path.write_text(render(build(name)), encoding="utf-8")
        print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
