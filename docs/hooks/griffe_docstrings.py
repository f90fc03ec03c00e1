"""Griffe extension (mkdocs.yml, mkdocstrings' `extensions`): jaxseq's docstrings as the API
pages show them, without rewriting the docstrings.

- A doctest (`>>>` lines, their `...` continuations and the output after them, up to a blank
  line) becomes a fenced `pycon` block; Markdown would read `>>>` as three nested quotes and
  join the lines into one paragraph. The docstring keeps its doctest (tests run them).
- A line that opens with a label of jaxseq's docstrings (`Inputs:`, `Returns:`, `Fields:`,
  `Call:`, `Raises:` ... followed by text on the same line) starts its own paragraph with the
  label in bold, as it reads as text, instead of running on from the line before (and is
  not taken for a Google-style section, whose items it does not have).
- A label alone on its line (`Inputs:`, `Fields:`) over an indented block becomes the bold
  label and a list, one item per line of the block's own indent (deeper lines continue the
  item), instead of a collapsed "Inputs" box that hides what a reader came for.
"""

from __future__ import annotations

import re

import griffe

PROMPT = re.compile(r"^(\s*)>>> ")
ALONE = re.compile(r"^(\s*)([A-Z][A-Za-z ]{1,30}):\s*$")
# Google-style sections griffe parses itself; any other label alone is jaxseq's
GOOGLE_SECTIONS = {"Args", "Arguments", "Params", "Parameters", "Keyword Args", "Keyword Arguments",
                   "Other Parameters", "Returns", "Return", "Yields", "Yield", "Receives", "Raises", "Raise",
                   "Warns", "Warnings", "Examples", "Example", "Attributes", "Functions", "Methods", "Classes",
                   "Modules", "Type Aliases", "Note", "Notes", "Warning", "See Also"}
LABEL = re.compile(r"^(\s*)([A-Z][A-Za-z ]{1,30}):(\s+\S)")  # "Inputs: x (N, T, D)", not "Returns:" alone


def fence_doctests(text: str) -> str:
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        match = PROMPT.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent = match.group(1)
        block = []
        while i < len(lines) and lines[i].strip():
            block.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        if out and out[-1].strip():
            out.append("")
        out += [f"{indent}```pycon", *(indent + line for line in block), f"{indent}```", ""]
    return "\n".join(out)


def separate_labels(text: str) -> str:
    out: list[str] = []
    fenced = False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        match = None if fenced else LABEL.match(line)
        if match:
            if out and out[-1].strip():
                out.append("")
            line = LABEL.sub(r"\1**\2:**\3", line, count=1)
        out.append(line)
    return "\n".join(out)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def list_labelled_blocks(text: str) -> str:
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        match = ALONE.match(lines[i])
        block_end = i + 1
        while block_end < len(lines) and lines[block_end].strip() and _indent(lines[block_end]) > _indent(lines[i]):
            block_end += 1
        if not match or match.group(2) in GOOGLE_SECTIONS or block_end == i + 1:
            out.append(lines[i])
            i += 1
            continue
        indent, base = match.group(1), min(_indent(line) for line in lines[i + 1:block_end])
        if out and out[-1].strip():
            out.append("")
        out += [f"{indent}**{match.group(2)}:**", ""]
        out += [f"{indent}{'- ' if _indent(line) == base else '  '}{line.strip()}" for line in lines[i + 1:block_end]]
        out.append("")
        i = block_end
    return "\n".join(out)


class JaxseqDocstrings(griffe.Extension):
    def on_instance(self, *, node, obj, agent, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = separate_labels(list_labelled_blocks(fence_doctests(obj.docstring.value)))
