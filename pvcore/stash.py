"""Typed keys into ``core.stash``, where each plugin keeps its state.

Its own module so that plugins and the core's own listeners (the event log,
introspection, the stream hub) can name their state without importing
:mod:`pvcore.app`, which imports them in turn (docs/architecture.md §1).
"""
from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class StashKey(Generic[T]):
    """A typed key into ``core.stash``: ``STATE = StashKey[ObjectStore]()``."""

    __slots__ = ()
