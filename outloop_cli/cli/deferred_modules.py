"""Standard-library modules that are imported everywhere but rarely used, loaded on first use.

Python 3.10 and 3.11's ``dataclasses`` imports ``inspect`` at its top, and
``inspect`` brings ``ast``, ``dis``, ``tokenize`` and ``linecache`` with it:
about 5 ms of the ~65 ms ``outloop status`` takes. There ``dataclasses`` only
calls ``inspect.signature`` to write a docstring for a class that has none, and
every dataclass of outloop has its own (``tests/test_architecture.py`` keeps it
so); the plain verbs (``status``, ``validate``) need nothing else of it. From
3.12 on ``dataclasses`` reads every class's annotations with
``inspect.get_annotations``, so nothing is deferred there.

:func:`defer` puts a module object in ``sys.modules`` whose code has not run
yet. ``import inspect`` hands that object back without running anything; the
first attribute asked of it (``inspect.signature``, ``from inspect import X``,
``dir(inspect)``) runs the real module's code into that same object, so every
importer, before and after, holds the one real module. ``importlib.util.LazyLoader``
cannot do this on 3.11: the ``import`` statement itself reads ``__spec__`` and
so loads a lazy module at once.

Only the plain verbs defer (``plain_argv.plain_call``), and they start no
threads; a verb that falls back to typer loads ``inspect`` at typer's first use
of it. Unlike a real import, the load is not atomic for other threads: the lock
keeps two threads from running the module twice, but a thread that reads a name
the load has already defined does not wait for the rest. A load that raises
leaves the module unloaded, and the next attribute asked tries again.
"""

from __future__ import annotations

import _thread
import importlib.machinery
import sys
import types

# what the plain verbs' imports bring and never use (see above: up to 3.11 only)
DEFERRED_MODULES: tuple[str, ...] = ("inspect",) if sys.version_info < (3, 12) else ()

_load_lock = _thread.RLock()


class _NotYetLoaded(types.ModuleType):
    """A module whose code runs when an attribute it lacks is first asked for."""

    def _outloop_load(self) -> None:
        with _load_lock:
            if type(self) is not _NotYetLoaded:
                return  # another thread loaded it while this one waited
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

    def __getattr__(self, attr: str) -> object:
        self._outloop_load()
        return getattr(self, attr)

    def __dir__(self) -> list[str]:
        self._outloop_load()
        return dir(self)


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
