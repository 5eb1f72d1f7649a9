"""How a lower app lets a higher one react to it without importing it (docs/architecture.md, Layering).

A lower app declares its hooks and ports in its own `hooks.py` (or `intents.py`); a higher app wires
them in its `AppConfig.ready()`. Nothing here is a Django signal: who is called, in which order and in
which transaction is explicit.

- `Hook`: an event with any number of receivers ("a session stopped"). `hook.emit(...)` calls every
  receiver in registration order, synchronously, in the caller's transaction; an exception propagates
  (and so rolls the caller's transaction back), exactly like the direct call a hook replaces.
- `Port`: one implementation of a typed interface that a higher app provides ("start charging token X
  on EVSE n": the gateway), or one answer to a question a lower app asks ("what does this session cost
  so far": tariffs). `port.get()` returns it, or the port's default when nothing is provided.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class Hook(Generic[F]):
    """An event of a lower app; `F` is the receivers' signature (keyword-only arguments, returns None)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._receivers: list[F] = []

    def __repr__(self) -> str:
        return f"<Hook {self.name}: {len(self._receivers)} receiver(s)>"

    def register(self, receiver: F) -> F:
        """Add a receiver (once: registering the same callable again changes nothing). Returns it, so
        it can be used as a decorator."""
        if receiver not in self._receivers:
            self._receivers.append(receiver)
        return receiver

    def unregister(self, receiver: F) -> None:
        if receiver in self._receivers:
            self._receivers.remove(receiver)

    @property
    def receivers(self) -> tuple[F, ...]:
        return tuple(self._receivers)

    def _emit(self, *args: Any, **kwargs: Any) -> None:
        for receiver in tuple(self._receivers):
            receiver(*args, **kwargs)

    @property
    def emit(self) -> F:
        """Call every receiver with these arguments (typed like a receiver)."""
        return cast(F, self._emit)


class Port(Generic[T]):
    """One implementation of `T` provided by a higher app (the last `provide` wins, so a test can swap
    it and put the original back)."""

    def __init__(self, name: str, *, default: T | None = None) -> None:
        self.name = name
        self._default = default
        self._impl: T | None = None

    def __repr__(self) -> str:
        return f"<Port {self.name}: {'provided' if self._impl is not None else 'not provided'}>"

    def provide(self, impl: T) -> T:
        self._impl = impl
        return impl

    @property
    def provided(self) -> T | None:
        return self._impl

    def get(self) -> T:
        """The implementation; RuntimeError when none is provided and the port has no default (the app
        that provides it is missing from INSTALLED_APPS)."""
        if self._impl is not None:
            return self._impl
        if self._default is not None:
            return self._default
        raise RuntimeError(f"nothing provides {self.name}: is the app that implements it installed?")
