"""Standard-library modules that are imported everywhere but rarely used, loaded on first use.

Python 3.11's ``dataclasses`` imports ``inspect`` at its top, and ``inspect``
brings ``ast``, ``dis``, ``tokenize`` and ``linecache`` with it: about 5 ms of
the ~65 ms ``outloop status`` takes. ``dataclasses`` only calls
``inspect.signature`` to write a docstring for a class that has none, and every
dataclass of outloop has its own (``tests/test_architecture.py`` keeps it so);
the plain verbs (``status``, ``validate``) need nothing else of it.

:func:`defer` puts a module object in ``sys.modules`` whose code has not run
yet. ``import inspect`` hands that object back without running anything; the
first attribute asked of it (``inspect.signature``, ``from inspect import X``)
runs the real module's code into that same object, so every importer, before
and after, holds the one real module. ``importlib.util.LazyLoader`` cannot do
this on 3.11: the ``import`` statement itself reads ``__spec__`` and so loads a
lazy module at once.

Only the plain verbs defer (``plain_argv.plain_call``), and they start no
threads; a verb that falls back to typer loads ``inspect`` at typer's first use
of it. The lock still keeps two threads from running the module twice: the
second to ask for a name waits for the first one's load.
"""

from __future__ import annotations

import _thread
import importlib.machinery
import sys
import types

DEFERRED_MODULES = ("inspect",)

_load_lock = _thread.RLock()


class _NotYetLoaded(types.ModuleType):
    """A module whose code runs when an attribute it lacks is first asked for."""

    def __getattr__(self, attr: str) -> object:
        with _load_lock:
            if type(self) is _NotYetLoaded:
                if self.__dict__.get("_outloop_loading"):
                    # its own code asked for a name not defined yet: what a partly
                    # initialised module answers
                    raise AttributeError(f"partially initialized module {self.__name__!r}")
                self.__dict__["_outloop_loading"] = True
                try:
                    spec = self.__spec__
                    assert spec is not None and spec.loader is not None
                    spec.loader.exec_module(self)
                finally:
                    del self.__dict__["_outloop_loading"]
                self.__class__ = types.ModuleType  # type: ignore[assignment]
        return getattr(self, attr)


def defer(name: str) -> bool:
    """Put ``name`` in ``sys.modules`` unloaded; ``False`` when it is loaded or not found."""
    if name in sys.modules:
        return False
    spec = importlib.machinery.PathFinder.find_spec(name)
    if spec is None or spec.loader is None or spec.origin is None:
        return False
    module = _NotYetLoaded(name)
    module.__spec__ = spec
    module.__loader__ = spec.loader
    module.__file__ = spec.origin
    module.__package__ = spec.parent
    module.__cached__ = spec.cached  # type: ignore[attr-defined]
    sys.modules[name] = module
    return True


def defer_rarely_used() -> None:
    """Defer every module of :data:`DEFERRED_MODULES` that no one has imported yet."""
    for name in DEFERRED_MODULES:
        defer(name)


def is_loaded(name: str) -> bool:
    """Whether ``name``'s code has run (a deferred module that no one used has not)."""
    module = sys.modules.get(name)
    return module is not None and type(module) is not _NotYetLoaded
