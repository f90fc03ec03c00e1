"""Docstrings: every public function documents itself (layers with shapes), and every
example in a docstring runs (doctest over the whole package)."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re

import pytest

import jaxseq
from jaxseq import layers

MODULES = sorted(info.name for info in pkgutil.walk_packages(jaxseq.__path__, "jaxseq."))
# The command line documents itself through argparse's --help; the library through docstrings.
LIBRARY_MODULES = [name for name in MODULES if name != "jaxseq.cli" and not name.startswith("jaxseq.commands")]
SHAPE = re.compile(r"\((?:[A-Z0-9*+]+,\s*)*[A-Z0-9*+]*,?\)")  # e.g. (N, T, D), (4H,), (N, T+1)


def public_functions(module):
    for name, value in vars(module).items():
        if name.startswith("_") or not (inspect.isfunction(value) or inspect.isclass(value)):
            continue
        if getattr(value, "__module__", None) == module.__name__:
            yield name, value


@pytest.mark.parametrize("module_name", LIBRARY_MODULES)
def test_every_public_function_and_class_has_a_docstring(module_name):
    module = importlib.import_module(module_name)
    assert inspect.getdoc(module), f"{module_name} has no module docstring"
    missing = [name for name, value in public_functions(module) if not inspect.getdoc(value)]
    assert not missing, f"{module_name}: no docstring on {missing}"


@pytest.mark.parametrize("name", [n for n in layers.__all__ if not n[0].isupper()])
def test_layer_docstrings_state_inputs_returns_and_shapes(name):
    doc = inspect.getdoc(getattr(layers, name))
    assert "Inputs:" in doc and "Returns:" in doc, name
    assert SHAPE.search(doc), f"{name}: no shape like (N, T, D) in its docstring"


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in {module_name}"


def test_there_are_examples_to_run():
    finder = doctest.DocTestFinder()
    examples = sum(
        len(test.examples) for name in MODULES for test in finder.find(importlib.import_module(name))
    )
    assert examples >= 8
