"""tf_melgan.errors: every exception the package defines is a TfMelganError, and nothing
below the CLIs' entry points exits the interpreter."""

import ast
import importlib
import inspect
import os
import pkgutil

import pytest

import tf_melgan
from tf_melgan.errors import TfMelganError, TrainingError

PACKAGE = os.path.dirname(tf_melgan.__file__)


def _modules():
    for info in pkgutil.walk_packages([PACKAGE], "tf_melgan."):
        yield info.name


def test_every_exception_class_of_the_package_is_a_tf_melgan_error():
    defined = {}
    for name in _modules():
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == name:
                defined[f"{name}.{cls_name}"] = cls
    assert len(defined) >= 15, sorted(defined)
    outside = [n for n, cls in defined.items() if not issubclass(cls, TfMelganError)]
    assert outside == []
    assert not any(issubclass(cls, SystemExit) for cls in defined.values())


def _exits(tree):
    """(line, function) of every `raise SystemExit` / `sys.exit(...)` in a module."""
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                else function
            if isinstance(child, ast.Raise) and child.exc is not None and \
                    "SystemExit" in ast.unparse(child.exc):
                found.append((child.lineno, function))
            if isinstance(child, ast.Call) and ast.unparse(child.func) == "sys.exit":
                found.append((child.lineno, function))
            visit(child, name)

    visit(tree, "<module>")
    return found


def test_only_the_command_line_entry_points_exit():
    """sys.exit only in a module's `__main__` block or its `cli()` entry point."""
    bad = []
    for root, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                with open(path) as fh:
                    tree = ast.parse(fh.read())
                bad += [(os.path.relpath(path, PACKAGE), line, fn) for line, fn in _exits(tree)
                        if fn not in ("<module>", "cli")]
    assert bad == []


def test_a_refused_init_from_is_caught_as_an_exception(tiny_config, tmp_path):
    from tf_melgan.resume import init_checkpoint
    with pytest.raises(Exception) as caught:  # what a notebook's `except Exception` sees
        init_checkpoint(tiny_config(), str(tmp_path / "nowhere"))
    assert isinstance(caught.value, TrainingError) and "no checkpoint" in str(caught.value)
