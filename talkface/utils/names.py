"""The one rule for a user-given name that becomes a file name: a method's ``runs/<method>.json``, a
study's plot per question, a clip taken from a folder by ``--clip``.

A name is what the user typed and what every table, record and report shows; its **file stem** is
derived from it by :func:`file_stem` and is only ever a single, plain file name inside the folder the
command writes to:

- A name that is already plain (``[A-Za-z0-9][A-Za-z0-9._+-]*``, at most :data:`MAX_PLAIN` characters,
  not ending in ``.``) is its own file stem: ``ours``, ``static-frame``, ``v1.2`` (so the files of
  results written before this rule keep their names).
- Any other name gets a slug and a hash: its letters folded to ASCII (``é`` -> ``e``), every run of
  other characters (``/``, ``..`` between them, spaces, ``=``, CJK, ...) made one ``-``, trimmed of
  ``-._+`` at both ends and cut to :data:`MAX_SLUG` characters, then ``-`` and the first
  :data:`HASH_CHARS` hex digits of the SHA-256 of the name's UTF-8 bytes: ``'ours é/中文'`` ->
  ``ours-e-<hash>``, ``'../../victim'`` -> ``victim-<hash>``. Two names never share a stem by the
  slug alone (the hash tells them apart); the folder's reader checks the name recorded inside the
  file, so a collision that remains (a case-insensitive file system: ``Ours``/``ours``) is refused.
- Refused, with one sentence: an empty name, one with control characters (NUL, newline, tab, ...) or
  lone surrogates, or with white space at either end. These look like another name, or like nothing,
  in every table, so two methods would be told apart by their file names alone.

``NAME=PATH`` arguments (``compare``, ``study export --method``) are split by :func:`split_name_path`,
so a name may hold spaces and ``=`` exactly as ``evaluate --method`` accepts them.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

#: Longest name used as its own file stem.
MAX_PLAIN = 80
#: Longest slug part of a file stem (the hash follows it).
MAX_SLUG = 48
#: Hex digits of the name's SHA-256 appended to a slug.
HASH_CHARS = 10

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_OTHER = re.compile(r"[^A-Za-z0-9._+-]+")
_TRIM = "-._+"


class NameRefused(ValueError):
    """A name that cannot be used; ``str()`` is one sentence saying why and what to do."""


def check_name(name: str, what: str = "name") -> str:
    """``name`` when it can be used (see the module docstring), else :class:`NameRefused`."""
    if not isinstance(name, str) or not name.strip():
        raise NameRefused(f"the {what} is empty: give a name")
    bad = sorted({c for c in name if unicodedata.category(c) in ("Cc", "Cs")})
    if bad:
        shown = ", ".join(repr(c) for c in bad[:3])
        raise NameRefused(f"the {what} {_show(name)} holds control characters ({shown}), which no table "
                          "shows: give a name without them")
    if name != name.strip():
        raise NameRefused(f"the {what} {_show(name)} starts or ends with white space, which no table shows: "
                          "give it without")
    return name


def is_plain(name: str) -> bool:
    """``name`` is its own file stem (see the module docstring)."""
    return (len(name) <= MAX_PLAIN and _PLAIN.fullmatch(name) is not None and not name.endswith("."))


def name_hash(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]


def file_stem(name: str, what: str = "name", *, check: bool = True) -> str:
    """The file stem of a user-given ``name``: one plain file name, never a path (see the module
    docstring); :class:`NameRefused` for a name that cannot be used. ``check=False`` (for names read
    from files, written before this rule or by hand) gives any string its slug and hash instead."""
    if check:
        check_name(name, what)
    if is_plain(name):
        return name
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = _OTHER.sub("-", folded).strip(_TRIM)[:MAX_SLUG].rstrip(_TRIM)
    digest = name_hash(name)
    return f"{slug}-{digest}" if slug else digest


def file_name(name: str, suffix: str, what: str = "name", prefix: str = "", *, check: bool = True) -> str:
    """``prefix + file_stem(name) + suffix``, e.g. ``file_name("ours", ".json")`` -> ``ours.json``."""
    return f"{prefix}{file_stem(name, what, check=check)}{suffix}"


def inside(folder: str | os.PathLike, name: str) -> Path:
    """``folder / name`` for a ``name`` that is a single file name (no ``/``, ``\\``, ``..``, NUL); a
    :class:`NameRefused` otherwise. For names that must be used verbatim (a clip id picks an existing
    ``<clip>.mp4``), where :func:`file_stem` would change them."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name
            or any(unicodedata.category(c) in ("Cc", "Cs") for c in name)):
        raise NameRefused(f"{_show(name)} is not a file name in {folder} (no '/', '\\', '..' or control "
                          "characters)")
    return Path(folder) / name


def split_name_path(spec: str, exists: Callable[[str], bool] = os.path.exists,
                    what: str = "NAME=PATH") -> tuple[str | None, str]:
    """``NAME=PATH`` -> (NAME, PATH); a bare ``PATH`` -> (None, PATH).

    A name may hold ``=`` and spaces (as ``evaluate --method`` allows), so the ``=`` that ends the name
    is the one after which an existing path follows; a whole argument that exists is a bare path.
    When several readings exist, the argument is ambiguous and refused; when none does, the first
    ``=`` ends the name (so the error says which path is missing) and no ``=`` means a bare path.
    """
    def there(path: str) -> bool:  # a name too long or holding NUL is no path, not an error
        try:
            return bool(exists(path))
        except (OSError, ValueError):
            return False

    readings: list[tuple[str | None, str]] = []
    if there(spec):
        readings.append((None, spec))
    for i, c in enumerate(spec):
        if c == "=" and i > 0 and i < len(spec) - 1 and there(spec[i + 1:]):
            readings.append((spec[:i], spec[i + 1:]))
    if len(readings) > 1:
        shown = "; ".join(f"{n!r} = {p!r}" if n is not None else f"the path {p!r}" for n, p in readings)
        raise NameRefused(f"{what} {spec!r} can be read {len(readings)} ways ({shown}): rename one of "
                          "these paths so that one reading is left")
    if readings:
        return readings[0]
    name, sep, path = spec.partition("=")
    if not sep:
        return None, spec
    if not name or not path:
        raise NameRefused(f"{spec!r}: expected {what}")
    return name, path


def _show(name: str) -> str:
    """``repr`` of a name, cut to 60 characters (names of any length reach messages)."""
    text = repr(name)
    return text if len(text) <= 60 else text[:56] + "...'"
