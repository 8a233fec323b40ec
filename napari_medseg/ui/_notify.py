"""Turn exceptions into one-line napari notifications (never a traceback wall).

Use :func:`notify_errors` around code that may fail on user input, or decorate a slot with
:func:`catch_errors`. The message shown is the exception's first line (prefixed with what the
user was doing), shortened at a sentence boundary when napari's toast would elide it; the full
text goes to the ``napari_medseg`` logger (WARNING) and the traceback at DEBUG level.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
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
    elif isinstance(exc, OSError) and exc.strerror and (
            exc.filename or isinstance(exc, (FileNotFoundError, PermissionError,
                                             IsADirectoryError))):
        filename = getattr(exc, "filename", None)
        reason = exc.strerror or type(exc).__name__
        text = f"{reason}: {filename}" if filename else text or reason
    elif not text:
        text = type(exc).__name__
    elif not isinstance(exc, (ValueError, OSError, RuntimeError)):
        # unexpected error types: keep the type name, it helps a bug report
        text = f"{type(exc).__name__}: {text}"
    return f"{action} failed: {text}" if action else text


#: Longest notification text: napari's toasts elide longer ones mid-sentence.
MAX_NOTIFICATION_CHARS = 140


#: An absolute path of three or more parts (shortened to its last two in long messages).
_PATH = re.compile(r"(?<![\w.])/(?:[^\s/:'\"]+/){2,}[^\s/:'\"]+")


def short_message(text: str, limit: int = MAX_NOTIFICATION_CHARS) -> str:
    """``text`` cut at a sentence or clause boundary to at most ``limit`` characters.

    Long absolute paths are first shortened to ``…/folder/name``. The first sentence is kept whole when it fits; otherwise the text is cut after the last
    "; " / ", " / word within the limit and ends with an ellipsis. Short text is unchanged.
    """
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    text = _PATH.sub(lambda m: "…/" + "/".join(m.group(0).rstrip("/").split("/")[-2:]), text)
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    for sep in (". ", "; ", " (", ", ", ": "):
        cut = head.rfind(sep)
        if cut >= limit // 2:
            return head[:cut].rstrip(" .;,:(") + ("." if sep == ". " else " …")
    cut = head.rfind(" ")
    return (head[:cut] if cut > 0 else head).rstrip(" .;,:") + " …"


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
    short = short_message(message)
    if short != message:
        logger.warning("%s", message)  # the whole text, for the console / bug reports
    show_error(short)
    return message


@contextmanager
def notify_errors(action: str | None = None, status: Any = None) -> Iterator[None]:
    """Context manager: any ``Exception`` inside becomes a napari error notification.

    Parameters
    ----------
    action : str, optional
        What the user was doing, e.g. ``"Open image"``; prefixes the message.
    status : QLabel, optional
        A dock's status line that shows the error too (instead of an older success).
    """
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - every error must reach the user, not the console
        message = show_error_message(exc, action)
        if status is not None:
            _show_in_status(type("_Owner", (), {"status": status})(), message)


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


def _show_in_status(owner: Any, message: str) -> None:
    """Put the error in the dock's own status line, so it never shows an old success."""
    status = getattr(owner, "status", None)
    if status is None or not hasattr(status, "setText"):
        return
    try:
        status.setText(f"⚠ {short_message(message)}")
    except RuntimeError:  # the widget was deleted
        pass


def clear_error_on_change(status: Any, *combos: Any, text: str = "") -> None:
    """When the user picks another layer in one of ``combos``, an error the status line still
    shows ("⚠ ... failed: no prediction layer chosen") is about a choice that is gone: clear it
    (to ``text``)."""

    def clear(*_: Any) -> None:
        try:
            if status.text().startswith("⚠"):
                status.setText(text)
        except RuntimeError:  # the widget was deleted
            pass

    for combo in combos:
        combo.currentIndexChanged.connect(clear)


def catch_errors(action: str | None = None) -> Callable[[F], F]:
    """Decorator for Qt slots and callbacks: errors become notifications, return ``None``.

    When the slot's object has a ``status`` label, the error replaces its text too.
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
            try:
                return func(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - every error must reach the user
                message = show_error_message(exc, action)
                _show_in_status(args[0] if args else None, message)
            return None

        return wrapper  # type: ignore[return-value]

    return decorate
