"""Turn exceptions into one-line napari notifications (never a traceback wall).

Use :func:`notify_errors` around code that may fail on user input, or decorate a slot with
:func:`catch_errors`. The message shown is the exception's first line (prefixed with what the
user was doing); the full traceback goes to the ``napari_medseg`` logger at DEBUG level.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

logger = logging.getLogger("napari_medseg")

F = TypeVar("F", bound=Callable[..., Any])


def error_message(exc: BaseException, action: str | None = None) -> str:
    """One-line, user-facing text for ``exc`` (first line of its message).

    Exceptions without a message show their type name. ``MemoryError`` gets a hint.
    """
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, MemoryError):
        text = "not enough memory for this operation (try a smaller region or image)"
    elif isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
        filename = getattr(exc, "filename", None)
        reason = exc.strerror or type(exc).__name__
        text = f"{reason}: {filename}" if filename else text or reason
    elif not text:
        text = type(exc).__name__
    elif not isinstance(exc, (ValueError, OSError, RuntimeError)):
        # unexpected error types: keep the type name, it helps a bug report
        text = f"{type(exc).__name__}: {text}"
    return f"{action} failed: {text}" if action else text


def show_error_message(exc: BaseException, action: str | None = None) -> str:
    """Log ``exc`` with traceback at DEBUG level and show a one-line napari error.

    Returns
    -------
    str
        The message that was shown.
    """
    from napari.utils.notifications import show_error

    message = error_message(exc, action)
    logger.debug("%s", message, exc_info=exc)
    show_error(message)
    return message


@contextmanager
def notify_errors(action: str | None = None) -> Iterator[None]:
    """Context manager: any ``Exception`` inside becomes a napari error notification.

    Parameters
    ----------
    action : str, optional
        What the user was doing, e.g. ``"Open image"``; prefixes the message.
    """
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - every error must reach the user, not the console
        show_error_message(exc, action)


def _n_positional(func: Callable[..., Any]) -> int | None:
    """Number of positional parameters ``func`` accepts (None = any number)."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return None
    n = 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return n


def catch_errors(action: str | None = None) -> Callable[[F], F]:
    """Decorator for Qt slots and callbacks: errors become notifications, return ``None``.

    Extra positional arguments a Qt signal passes (e.g. ``checked`` from ``clicked``) are
    dropped when the function does not accept them, so ``button.clicked.connect(self._on_x)``
    works for ``def _on_x(self)``.
    """

    def decorate(func: F) -> F:
        n_pos = _n_positional(func)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if n_pos is not None:
                args = args[:n_pos]
            with notify_errors(action):
                return func(*args, **kwargs)
            return None

        return wrapper  # type: ignore[return-value]

    return decorate
