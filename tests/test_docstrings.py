"""Every `>>>` example in the package's docstrings runs (what `pytest --doctest-modules keras_vit` checks)."""

import doctest
import importlib
import pkgutil

import pytest

import keras_vit

MODULES = sorted(
    name for _, name, _ in pkgutil.walk_packages(keras_vit.__path__, prefix="keras_vit.") if name != "keras_vit.cli"
) + ["keras_vit.cli"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_the_examples_are_found():
    finder = doctest.DocTestFinder()
    examples = sum(len(t.examples) for name in MODULES for t in finder.find(importlib.import_module(name)))
    assert examples >= 40, examples
