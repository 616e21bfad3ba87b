"""The command-line kit every ``*/cli.py`` uses: one error line and exit 2, old option spellings, and
commands generated from a list of options.

A user's mistake (a missing file, a refused folder, an unknown name) is one ``error:`` line on stderr
and exit status 2, never a traceback; a bug still raises. Renamed options keep working with one note.
Generated commands (``prepare <corpus>``, ``train <stage>``, ``baseline <name>``) are plain functions
whose signature Typer reads, built here once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import typer

#: Exit status of a command stopped by a user's mistake (Click's usage-error status).
USER_ERROR = 2


def error_line(error: BaseException | str, *, one_line: bool = False) -> str:
    """``error: <message>``; a KeyError's message without its quotes; ``one_line`` folds white space."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    text = " ".join(str(message).split()) if one_line else str(message)
    return f"error: {text}"


def fail(error: BaseException | str, *, one_line: bool = False) -> NoReturn:
    """Print :func:`error_line` on stderr and exit with :data:`USER_ERROR`."""
    typer.echo(error_line(error, one_line=one_line), err=True)
    raise typer.Exit(USER_ERROR)


def renamed_option(new: str, new_value: Any, old: str, old_value: Any, meaning: str = "") -> Any:
    """The value of option ``new``, or of its old spelling ``old`` with a note on stderr; both given with
    different values is a ``BadParameter``. ``meaning`` says what the old spelling meant here."""
    if old_value is None:
        return new_value
    what = f" ({meaning})" if meaning else ""
    typer.echo(f"note: {old} is deprecated; use {new}{what}. {old} still works.", err=True)
    if new_value is not None and new_value != old_value:
        raise typer.BadParameter(f"{old} {old_value} and {new} {new_value} disagree: give {new} only")
    return old_value


def keyword(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    """A keyword-only parameter (``default`` is usually a ``typer.Option``)."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


def generated_command(name: str, doc: str | None, parameters: Sequence[inspect.Parameter],
                      body: Callable[[dict[str, Any]], None]) -> Callable[..., None]:
    """A function Typer reads as a command with ``parameters``; it calls ``body`` with the parsed values
    by parameter name."""

    def command(**values: Any) -> None:
        body(values)

    command.__signature__ = inspect.Signature(list(parameters))  # type: ignore[attr-defined]
    command.__name__ = name
    command.__doc__ = doc
    return command
