"""The one process-wide cache of heavy objects: loaded models, parsed dictionaries, lazily built classes.

Every module that keeps something expensive for the life of the process asks for it here instead of
keeping its own global::

    model = shared(("asr.faster-whisper", folder, device, precision, threads), lambda: WhisperModel(...))

``shared(key, factory)`` returns the object stored under ``key``, calling ``factory()`` only the
first time; threads asking for the same key at once wait for that one call (so a model is never
loaded twice), while different keys load in parallel. A factory that raises stores nothing: the next
call tries again. Keys are hashable; by convention a tuple whose first item names the owner
(``"extract.models"``, ``"asr.faster-whisper"``, ...) or a plain string, so :func:`clear` can forget
one owner's entries (``clear("asr.faster-whisper")``) or everything (``clear()``).

The cache lives in one process: every worker process of a pool loads its own copy once.
"""
from __future__ import annotations

import threading
from typing import Callable, Hashable, TypeVar

T = TypeVar("T")

_ENTRIES: dict[Hashable, object] = {}
_KEY_LOCKS: dict[Hashable, threading.RLock] = {}
_GUARD = threading.Lock()  # guards _KEY_LOCKS only; a factory runs under its key's own lock


def shared(key: Hashable, factory: Callable[[], T]) -> T:
    """The object cached under ``key``, built by ``factory()`` on first use (once per process)."""
    try:
        return _ENTRIES[key]  # type: ignore[return-value]
    except KeyError:
        pass
    with _GUARD:
        lock = _KEY_LOCKS.setdefault(key, threading.RLock())
    with lock:
        if key not in _ENTRIES:
            _ENTRIES[key] = factory()
        return _ENTRIES[key]  # type: ignore[return-value]


def namespace(key: Hashable) -> Hashable:
    """The owner part of a key: the first item of a tuple key, else the key itself."""
    return key[0] if isinstance(key, tuple) and key else key


def contains(key: Hashable) -> bool:
    """Whether ``key`` has been built in this process."""
    return key in _ENTRIES


def keys(owner: Hashable | None = None) -> list[Hashable]:
    """The cached keys (of one owner when given)."""
    return [k for k in list(_ENTRIES) if owner is None or namespace(k) == owner]


def clear(owner: Hashable | None = None) -> int:
    """Forget every entry (or only ``owner``'s); returns how many were dropped. Objects still
    referenced elsewhere stay alive there; the next :func:`shared` call builds a new one."""
    drop = keys(owner)
    for k in drop:
        _ENTRIES.pop(k, None)  # its lock stays: a factory running right now still guards the key
    return len(drop)


__all__ = ["shared", "contains", "keys", "clear", "namespace"]
