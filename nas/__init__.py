"""Hardware-aware neural architecture search: the Python API (and the `nas` command line's package).

    import nas
    run = nas.search(space="mnv3", target="pixel_cpu", data=my_dataset, trials=200)
    run.winner.arch, run.winner.model, run.winner.latency_ms, run.trials
    small = nas.refine(run, target_ratio=0.75)          # NetAdapt
    nas.latency("pixel_cpu").predict(small.arch)
    nas.export(small.model, "model.onnx")
    run = nas.Run.load("runs/<name>")

The names below come from `nas.api`, imported on first use: `import nas` stays cheap (torch and
Ray load only when a function needs them).
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

from search_spaces.errors import UserError

if TYPE_CHECKING:
    from nas.api import Latency, Refined, Run, Winner, build_table, export, latency, refine, search

__all__ = ["Latency", "Refined", "Run", "UserError", "Winner", "build_table", "export", "latency", "refine",
           "search"]


def __getattr__(name: str):
    """The API's names, from `nas.api` on first use (PEP 562)."""
    if name in __all__:
        value = getattr(importlib.import_module("nas.api"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """`nas.search` is the API's function, though `nas/search.py` is a module too: the import system
    binds a submodule as an attribute of its package when it first loads it, which would replace the
    function. It is kept out; the module stays importable by name (`from nas.search import ...`)."""

    def __setattr__(self, name: str, value) -> None:
        if name in __all__ and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
