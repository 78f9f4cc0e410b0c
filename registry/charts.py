"""HTTP(S) Helm chart repositories: read ``<url>/index.yaml`` cheaply, however large it is.

A Flux ``HelmRepository`` of the default type names a chart repository whose ``index.yaml``
lists every chart and version. Public indexes reach 20 MB and more (15,000 entries); Headwind
only needs ``version``, ``created`` and ``digest`` of the charts its HelmReleases use, polled
every few minutes. So :class:`ChartRepositoryClient`:

* sends ``If-None-Match``/``If-Modified-Since`` from its previous successful fetch; a ``304``
  returns :data:`NotModified` without reading or parsing anything;
* asks for gzip and streams the body: wire bytes are inflated incrementally, decoded as UTF-8
  and fed line by line to a scanner; only the three fields of the wanted charts are kept. The
  document is never built as Python objects and its text is never held whole, not even once;
* follows at most 5 redirects itself, refusing targets that resolve to link-local or
  unspecified addresses (cloud metadata), and sends Basic credentials only to the scheme, host
  and port of the configured URL (an ``Authorization`` header is actively removed elsewhere,
  whatever the session or ``~/.netrc`` say);
* maps failures to the :mod:`registry.client` error classes (401/403 auth, 404 not found, 429
  rate limited with ``Retry-After``, 5xx and no answer transient) plus
  :class:`ChartIndexError` for a body that is not a Helm index. No message ever holds the
  password, the URL's user info or its query string.

The parser. Helm and every Go tool write indexes with sigs.k8s.io/yaml (go-yaml's emitter):
block style, two-space indentation, sequences not indented under their key, scalars on their
key's line, long scalars folded onto more-indented lines, quoted scalars that may continue on
following lines. :func:`_scan` is a line scanner for that block subset of YAML: it tracks just
enough lexical state (multi-line quoted scalars, block scalars, plain continuation lines,
comments) to know which lines are structure, and reads structure only at the levels that
matter (top level, chart names, list items, entry keys). Everything else it skips without
looking inside, so ``version:`` inside ``dependencies``, ``annotations`` or a ``|`` block is
never taken for the entry's. Anything outside that subset (anchors, aliases, tags or merge keys
where they could matter, flow collections over several lines, a scalar alone on its line,
tabs, several documents, ``?`` keys) makes it give up; the client then fetches the index again
and reads it with libyaml's event parser (:func:`_parse_events`: PyYAML's ``CSafeLoader``
events, a small recursive reader, anchors and merge keys resolved for the three fields), and
once that succeeds, uses that parser for this repository from then on. The event parser is
exact but about 1.6x slower: 1.2 million events, about 1.0 s for a 22 MB index that the
scanner reads in about 0.65 s (bench/helm_index.py measures both). The scanner does not
validate what it skips: invalid YAML inside a field it does not read can pass unnoticed.

Pure of Django: settings (a CA bundle, sizes) are arguments.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import io
import logging
import os
import re
import shutil
import ssl
import tempfile
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
import urllib3.exceptions
import yaml
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from registry.client import (
    RegistryAuthError,
    RegistryError,
    RegistryNotFound,
    RegistryRateLimited,
    RegistryServerError,
    parse_retry_after,
    realm_address_problem,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_INDEX_BYTES",
    "MAX_REDIRECTS",
    "ChartIndexError",
    "ChartRepositoryClient",
    "ChartVersion",
    "IndexResult",
    "NotModified",
    "ParsedIndex",
    "RegistryAuthError",
    "RegistryError",
    "RegistryNotFound",
    "RegistryRateLimited",
    "RegistryServerError",
    "parse_index",
]

DEFAULT_TIMEOUT = (5.0, 60.0)  # (connect, read) seconds, per socket operation
DEFAULT_DEADLINE = 300.0  # seconds for a whole fetch, body included (a slow drip ends too)
DEFAULT_MAX_INDEX_BYTES = 50 << 20  # inflated YAML; Flux source-controller's default limit
MAX_REDIRECTS = 5
USER_AGENT = "headwind-poller/0.1"
_CHUNK = 1 << 16  # wire bytes read at a time
_INFLATE_STEP = 1 << 20  # inflated bytes produced at a time (bounds a gzip bomb's bite)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_WANTED = ("version", "created", "digest")
_FIELDS = {name: index for index, name in enumerate(_WANTED)}
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})

Observer = Callable[[str, str], None]  # (kind: "index", outcome)
Parser = Literal["auto", "scan", "events"]


# --- results and errors -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChartVersion:
    """One entry of a chart: its ``version`` exactly as written, ``created`` (aware, UTC when
    the index gives no offset; None when absent or unreadable) and ``digest`` (or None)."""

    version: str
    created: dt.datetime | None
    digest: str | None


class _NotModifiedType(enum.Enum):
    NOT_MODIFIED = "NotModified"

    def __repr__(self) -> str:
        return "NotModified"

    def __bool__(self) -> bool:
        return False


NotModified = _NotModifiedType.NOT_MODIFIED
"""Returned by :meth:`ChartRepositoryClient.fetch` on ``304``: the previous result still holds."""


@dataclass(frozen=True, slots=True)
class ParsedIndex:
    """What a parser keeps of an index: ``versions`` of the wanted charts found (in index
    order; a wanted chart the index lacks is absent), the ``apiVersion``, and how many entries
    of the wanted charts were ``skipped`` for having no version."""

    api_version: str
    versions: dict[str, list[ChartVersion]]
    skipped: int = 0
    parser: str = "scan"


@dataclass(frozen=True, slots=True)
class IndexResult:
    """A fetched and parsed index. ``bytes_read`` counts body bytes off the wire (compressed
    when gzip), ``bytes_decoded`` the YAML they inflated to."""

    versions: dict[str, list[ChartVersion]]
    etag: str | None
    last_modified: str | None
    bytes_read: int
    bytes_decoded: int
    api_version: str = "v1"
    skipped: int = 0
    parser: str = "scan"
    requests: int = 1
    fetched_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


class ChartIndexError(RegistryError):
    """The body is not a Helm repository index (not YAML, not a mapping, no apiVersion), is
    larger than allowed, or is not valid gzip/UTF-8. Not transient: the same bytes fail again."""


class _Unsupported(Exception):  # internal signal: the line scanner hands over
    """The line scanner met YAML outside the subset it reads; the event parser must decide."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


class _Malformed(Exception):  # internal: becomes ChartIndexError, with the URL
    pass


# --- scalars ------------------------------------------------------------------------------------


_FRACTION = re.compile(r"(\.\d{6})\d+")


def _parse_created(text: str | None) -> dt.datetime | None:
    """RFC 3339 as Go writes it (nanoseconds, ``Z``), also YAML's space-separated timestamp;
    naive times are taken as UTC. Unreadable → None (``created`` is informative only)."""
    if not text:
        return None
    text = text.strip()
    if len(text) > 26 and "." in text:
        text = _FRACTION.sub(r"\1", text, count=1)  # Python keeps microseconds
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when


def _close_quote(line: str, start: int, quote: str) -> int:
    """Index just after the quote that closes a scalar opened before ``start``, or -1."""
    position = start
    if quote == "'":
        while True:
            found = line.find("'", position)
            if found < 0:
                return -1
            if line.startswith("'", found + 1):  # '' is an escaped quote
                position = found + 2
                continue
            return found + 1
    while True:
        found = line.find('"', position)
        if found < 0:
            return -1
        backslashes = 0
        index = found - 1
        while index >= start and line[index] == "\\":
            backslashes += 1
            index -= 1
        if backslashes % 2 == 0:
            return found + 1
        position = found + 1


def _unquote(text: str, line_number: int) -> str:
    """A one-line quoted scalar (quotes included) to its value."""
    if text[0] == "'":
        return text[1:-1].replace("''", "'")
    inner = text[1:-1]
    if "\\" not in inner:
        return inner
    try:  # YAML's escapes (\x, \u, \N, \_, \L ...): let libyaml decode this one scalar
        value = yaml.load(text, Loader=_SAFE_LOADER)  # a safe loader, one small scalar
    except yaml.YAMLError:
        raise _Unsupported(line_number, "undecodable double-quoted scalar") from None
    if not isinstance(value, str):
        raise _Unsupported(line_number, "undecodable double-quoted scalar")
    return value


def _rest_is_blank(line: str, position: int) -> bool:
    """Nothing but spaces and an optional comment from ``position`` on."""
    rest = line[position:].strip()
    return not rest or rest[0] == "#"


def _flow_balanced(line: str, start: int) -> bool:
    """A flow collection opened at ``start`` closes on this line, with nothing but a comment
    after it (quotes respected)."""
    depth = 0
    position = start
    length = len(line)
    while position < length:
        char = line[position]
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                return _rest_is_blank(line, position + 1)
        elif char in "\"'":
            end = _close_quote(line, position + 1, char)
            if end < 0:
                return False
            position = end
            continue
        elif char == "#" and line[position - 1] in " \t":
            return False
        position += 1
    return False


_BLOCK_HEADER = re.compile(r"[|>][-+1-9]{0,2}[ \t]*(?:#.*)?\n?\Z")


# --- the line scanner ---------------------------------------------------------------------------


_NONE = 1 << 30  # "no continuation": no line is indented more than this


def _scan(lines: Iterable[str], wanted: frozenset[str] | None) -> ParsedIndex:
    """Read an index written in go-yaml's block style; raise :class:`_Unsupported` otherwise.

    Per line: while a multi-line quoted scalar is open, only its closing quote is looked for.
    Otherwise a line indented more than ``cont`` continues the scalar of the line that set it
    (plain continuation or block scalar content) and is skipped unseen; blank and comment lines
    are skipped. Every other line is a node line, ``[- ]*[key: ]value``. Its value decides the
    next ``cont``: a scalar (plain, quoted, block, one-line flow, alias) is continued by lines
    indented more than its owner (the key's column, else the last dash's); an empty value
    opens a nested block. The line's column says where it sits: column 0 is a top-level key;
    inside ``entries:`` chart names share one column, a chart's items start with a dash at one
    column, an entry's keys share the column after its dash. Deeper lines belong to the value
    of some entry field and are only tracked lexically, never interpreted.
    """
    versions: dict[str, list[list[str | None]]] = {}
    api_version: str | None = None
    seen_top: set[str] = set()
    number = 0
    cont = _NONE  # lines indented more than this continue the last scalar
    cont_wanted = False  # ... which is a wanted field: a continuation is unsupported
    quote = ""  # the quote character while a multi-line quoted scalar is open
    quote_owner = 0
    started = False  # a node line seen (a leading "---" may come before)
    in_entries = False
    deep = _NONE  # inside entries, lines indented more than this are inside an entry's field
    chart_col = -1  # column of chart names
    chart: str | None = None  # the chart whose list we are in
    chart_list: list[list[str | None]] | None = None  # where its entries go (None: unwanted)
    item_col = -1  # column of the chart list's dashes
    key_col = -1  # column of the current entry's keys
    entry: list[str | None] | None = None  # [version, created, digest] of the current entry
    special = _SPECIAL_VALUE

    for number, line in enumerate(lines, 1):
        if quote:
            end = _close_quote(line, 0, quote)
            if end < 0:
                continue
            quote = ""
            if not _rest_is_blank(line, end):
                raise _Unsupported(number, "text after a multi-line quoted scalar")
            cont = quote_owner
            continue
        stripped = line.lstrip(" ")
        if stripped == "\n" or not stripped:
            continue  # blank: never ends a block scalar or a continuation
        indent = len(line) - len(stripped)
        if indent > cont:
            if cont_wanted and stripped[0] != "#":
                raise _Unsupported(number, "a version, created or digest over several lines")
            continue
        first = stripped[0]
        if first == "#":
            continue
        cont = _NONE
        cont_wanted = False

        # -- the node line: dashes, then a key, then the value -------------------------------
        position = indent
        length = len(line)
        dash = -1  # column of the last dash
        dashes = 0
        if first == "-":
            if indent == 0 and stripped.startswith(("---", "...")):
                if not started and stripped.rstrip() == "---":
                    continue
                if stripped[3:4] in ("", " ", "\n", "\t"):
                    raise _Unsupported(number, "several documents")
            while first == "-" and (position + 1 == length or line[position + 1] in " \n"):
                dash = position
                dashes += 1
                position += 1
                while position < length and line[position] == " ":
                    position += 1
                first = line[position] if position < length else "\n"
        started = True
        key_end = -1  # where the key's text ends (a plain key) or -2 (a quoted key)
        value = position
        if first in special:
            if first == '"' or first == "'":
                end = _close_quote(line, position + 1, first)
                if end > 0:
                    after = end
                    while after < length and line[after] == " ":
                        after += 1
                    if line.startswith(":", after) and (after + 1 == length
                                                        or line[after + 1] in " \n"):
                        key_end = -2
                        value = after + 1
            elif first == "?":
                if position + 1 == length or line[position + 1] in " \n":
                    raise _Unsupported(number, "a complex mapping key")
                key_end = _plain_key_end(line, position)
                value = key_end + 1 if key_end >= 0 else position
            elif first == "&" or first == "!":
                raise _Unsupported(number, "an anchor or tag before a key")
            elif first == "-":  # not an indicator: a plain key or scalar such as -1
                key_end = _plain_key_end(line, position)
                value = key_end + 1 if key_end >= 0 else position
            elif first == "\t":
                raise _Unsupported(number, "a tab in indentation")
            elif first == "%" and indent == 0:
                raise _Unsupported(number, "a directive")
            # else an indicator (* | > [ { % @ `) or nothing: no key
        else:
            colon = line.find(": ", position)
            if colon >= 0:
                if line.find(" #", position, colon) < 0:
                    key_end = colon
                    value = colon + 2
                    while value < length and line[value] == " ":
                        value += 1
            elif line.endswith(":\n"):
                key_end, value = length - 2, length - 1
            elif line.endswith(":"):  # the last line, without a line break
                key_end, value = length - 1, length
        if key_end != -1:
            while value < length and line[value] == " ":
                value += 1
            owner = position
        elif dashes:
            owner = dash
        else:
            raise _Unsupported(number, "a scalar alone on its line")
        kind = line[value] if value < length else "\n"  # the value's first character

        # -- where the line sits ------------------------------------------------------------
        structural = False  # a line whose value we must understand exactly
        field_index = -1  # 0..2: a wanted field of an entry; 3: apiVersion
        if indent > deep:
            pass  # inside the value of an entry's field: lexical tracking only
        elif indent == 0:
            if dashes or key_end == -1:
                raise _Unsupported(number, "the document is not a mapping")
            key = _key_text(line, position, key_end, number)
            in_entries = False
            deep = _NONE
            chart = chart_list = entry = None
            if key in seen_top:
                raise _Unsupported(number, f"top-level key {key!r} twice")
            seen_top.add(key)
            if key == "entries":
                structural = True
                if kind == "\n" or kind == "#":
                    in_entries = True
                    chart_col = -1
                elif not _is_empty_value(line, value):
                    raise _Unsupported(number, "entries is not a block mapping")
            elif key == "apiVersion":
                field_index = 3
        elif in_entries:
            entry_line = False
            if indent == key_col and not dashes:  # another key of the current entry
                if key_end == -1:
                    raise _Unsupported(number, "an entry line without a key")
                entry_line = True
            elif dashes and (indent == item_col or (item_col < 0 and chart is not None
                                                    and indent >= chart_col >= 0)):
                if dashes > 1 or key_end == -1:  # a new entry
                    raise _Unsupported(number, "a chart entry that is not a mapping")
                item_col = indent
                key_col = deep = position
                entry = [None, None, None] if chart_list is not None else None
                if chart_list is not None:
                    chart_list.append(entry)  # type: ignore[arg-type]
                entry_line = True
            else:
                if chart_col < 0:
                    chart_col = indent
                if indent == chart_col and not dashes:  # a chart's name
                    if key_end == -1:
                        raise _Unsupported(number, "a chart without a name")
                    key = _key_text(line, position, key_end, number)
                    structural = True
                    chart = key
                    item_col = key_col = -1
                    deep = _NONE
                    entry = None
                    chart_list = [] if wanted is None or key in wanted else None
                    if chart_list is not None:
                        versions[key] = chart_list
                    if kind != "\n" and kind != "#" and not _is_empty_value(line, value):
                        raise _Unsupported(number, "a chart whose value is not a list")
                elif indent < chart_col or chart is None or item_col < 0 or indent < key_col:
                    raise _Unsupported(number, "unexpected indentation in entries")
                # else: a dash at the key column, inside an entry field's value
            if entry_line:
                structural = True
                if key_end >= 0:
                    key = line[position:key_end].rstrip(" ")
                else:
                    key = _key_text(line, position, key_end, number)
                if key == "<<":
                    raise _Unsupported(number, "a merge key in an entry")
                field_index = _FIELDS.get(key, -1)
        # else: inside the value of a top-level key other than entries

        # -- the value ----------------------------------------------------------------------
        if field_index >= 0:
            text = _one_line_scalar(line, value, number)
            if field_index == 3:
                api_version = text
            elif entry is not None:
                entry[field_index] = text
            cont = owner
            cont_wanted = True
            continue
        if kind in special:
            if kind == "\n" or kind == "#":
                continue  # a nested block follows (or nothing)
            if kind == "&" or kind == "!":
                if structural:
                    raise _Unsupported(number, "an anchor or tag on a structural value")
                space = line.find(" ", value)  # skip the property; what follows decides
                if space < 0:
                    continue
                value = space
                while value < length and line[value] == " ":
                    value += 1
                kind = line[value] if value < length else "\n"
                if kind == "\n" or kind == "#":
                    continue
                if kind == "&" or kind == "!":
                    raise _Unsupported(number, "several node properties")
            if kind == '"' or kind == "'":
                end = _close_quote(line, value + 1, kind)
                if end < 0:
                    quote = kind
                    quote_owner = owner
                    continue
                if not _rest_is_blank(line, end):
                    raise _Unsupported(number, "text after a quoted scalar")
            elif kind == "[" or kind == "{":
                if not _flow_balanced(line, value):
                    raise _Unsupported(number, "a flow collection over several lines")
            elif kind == "|" or kind == ">":
                if not _BLOCK_HEADER.match(line, value):
                    raise _Unsupported(number, "an unusual block scalar header")
            elif kind == "*":
                if structural:
                    raise _Unsupported(number, "an alias in a structural position")
            elif kind == "\t":
                pass  # a tab before a plain scalar
            elif kind == "-":
                if line.startswith(("- ", "-\n"), value):
                    raise _Unsupported(number, "a sequence after a key on one line")
            elif kind != "?":
                raise _Unsupported(number, "a reserved indicator")
        elif line.find(": ", value) >= 0 or line.endswith(":\n"):
            colon = line.find(": ", value)
            if colon < 0:
                colon = length - 2
            if line.find(" #", value, colon) < 0:  # not allowed in a plain scalar
                raise _Unsupported(number, "a ': ' inside a plain scalar")
        cont = owner

    if quote:
        raise _Unsupported(number, "an unterminated quoted scalar")
    if api_version is None:
        raise _Unsupported(number, "no apiVersion")  # the exact parser says what this is
    skipped = 0
    result: dict[str, list[ChartVersion]] = {}
    for name, rows in versions.items():
        kept = []
        for version, created, digest in rows:
            if not version:  # Helm skips an entry without a valid version
                skipped += 1
                continue
            kept.append(ChartVersion(version, _parse_created(created), digest))
        result[name] = kept
    return ParsedIndex(api_version, result, skipped, "scan")


# Characters that make a node line's first character or a value's first character special.
_SPECIAL_VALUE = frozenset("\"'?&!*|>[{%@`#\n\t-")


def _plain_key_end(line: str, position: int) -> int:
    colon = line.find(": ", position)
    if colon < 0 and line.endswith((":\n", ":")):
        colon = len(line.rstrip("\n")) - 1
    if colon >= 0 and line.find(" #", position, colon) < 0:
        return colon
    return -1


def _key_text(line: str, position: int, key_end: int, number: int) -> str:
    """The text of the key found at ``position`` (``key_end`` -2: a quoted key)."""
    if key_end == -2:
        end = _close_quote(line, position + 1, line[position])
        return _unquote(line[position:end], number)
    return line[position:key_end].rstrip(" ")


def _is_empty_value(line: str, position: int) -> bool:
    """``[]``, ``{}``, ``null`` or ``~`` (an empty list, mapping or nothing), comment allowed."""
    text = line[position:].split(" #", 1)[0].strip()
    return text in ("[]", "{}") or text in _NULLS


def _one_line_scalar(line: str, position: int, number: int) -> str | None:
    """A wanted field's value, which must be a plain or quoted scalar on this line."""
    length = len(line)
    kind = line[position] if position < length else "\n"
    if kind in "\"'":
        end = _close_quote(line, position + 1, kind)
        if end < 0 or not _rest_is_blank(line, end):
            raise _Unsupported(number, "a quoted version, created or digest over several lines")
        return _unquote(line[position:end], number)
    if kind in "&*!|>[{%@`":
        raise _Unsupported(number, "a version, created or digest that is not a plain scalar")
    text = line[position:].rstrip("\n")
    comment = text.find(" #")
    if comment >= 0:
        text = text[:comment]
    text = text.strip(" \t")
    if text.startswith("#"):
        text = ""
    return None if text in _NULLS else text


# --- the event parser (exact, slower) -----------------------------------------------------------


_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Events:
    """Reads a YAML event stream for the three fields, resolving anchors, aliases and ``<<``.

    Anchored nodes are remembered only as much as an alias in a relevant place needs: a
    scalar's value, a mapping's three fields (after its own merges), a sequence's mappings.
    """

    def __init__(self, stream: IO[bytes], wanted: frozenset[str] | None) -> None:
        self.events: Iterator[Any] = yaml.parse(stream, Loader=_SAFE_LOADER)
        self.wanted = wanted
        self.anchors: dict[str, tuple[str, Any]] = {}
        self.skipped = 0

    def next(self) -> Any:
        return next(self.events)

    def read(self) -> ParsedIndex:
        self.next()  # StreamStart
        event = self.next()
        if isinstance(event, yaml.StreamEndEvent):
            raise _Malformed("the document is empty")
        root = self.next()
        if not isinstance(root, yaml.MappingStartEvent):
            what = "a scalar" if isinstance(root, yaml.ScalarEvent) else "not a mapping"
            raise _Malformed(f"the document is {what}, not a Helm repository index")
        api_version: str | None = None
        versions: dict[str, list[ChartVersion]] = {}
        while True:
            event = self.next()
            if isinstance(event, yaml.MappingEndEvent):
                break
            key = self.key(event)
            value = self.next()
            if key == "apiVersion":
                api_version = self.scalar(value)
            elif key == "entries":
                versions = self.entries(value)
            else:
                self.skip(value)
        # Helm reads the first document only.
        if not api_version:
            raise _Malformed("no apiVersion: not a Helm repository index")
        return ParsedIndex(api_version, versions, self.skipped, "events")

    def key(self, event: Any) -> str | None:
        if isinstance(event, yaml.ScalarEvent):
            self.remember_scalar(event)
            return event.value
        if isinstance(event, yaml.AliasEvent):
            kind, value = self.anchors.get(event.anchor, ("", None))
            return value if kind == "scalar" else None
        self.skip(event)  # a complex key
        return None

    def remember_scalar(self, event: Any) -> None:
        if event.anchor:
            self.anchors[event.anchor] = ("scalar", _scalar_value(event))

    def scalar(self, event: Any) -> str | None:
        """A scalar's value (through an alias); None for null or a collection."""
        if isinstance(event, yaml.ScalarEvent):
            self.remember_scalar(event)
            return _scalar_value(event)
        if isinstance(event, yaml.AliasEvent):
            kind, value = self.anchors.get(event.anchor, ("", None))
            return value if kind == "scalar" else None
        self.skip(event)
        return None

    def entries(self, event: Any) -> dict[str, list[ChartVersion]]:
        versions: dict[str, list[ChartVersion]] = {}
        if isinstance(event, yaml.ScalarEvent) and _scalar_value(event) is None:
            return versions
        if not isinstance(event, yaml.MappingStartEvent):
            raise _Malformed("entries is not a mapping")
        while True:
            event = self.next()
            if isinstance(event, yaml.MappingEndEvent):
                return versions
            name = self.key(event)
            value = self.next()
            rows = self.chart_list(value)
            if name is not None and (self.wanted is None or name in self.wanted):
                kept = []
                for fields in rows:
                    if not fields.get("version"):
                        self.skipped += 1
                        continue
                    kept.append(ChartVersion(fields["version"],
                                             _parse_created(fields.get("created")),
                                             fields.get("digest")))
                versions[name] = kept

    def chart_list(self, event: Any) -> list[dict[str, str | None]]:
        if isinstance(event, yaml.AliasEvent):
            kind, value = self.anchors.get(event.anchor, ("", None))
            if kind == "sequence":
                return value
            if kind == "scalar" and value is None:
                return []
            raise _Malformed(f"alias *{event.anchor} is not a list of chart versions")
        if isinstance(event, yaml.ScalarEvent):
            self.remember_scalar(event)
            if _scalar_value(event) is None:
                return []
            raise _Malformed("a chart's value is not a list")
        if isinstance(event, yaml.MappingStartEvent):
            raise _Malformed("a chart's value is not a list")
        return self.sequence(event)

    def sequence(self, start: Any) -> list[dict[str, str | None]]:
        """A sequence's mapping items as field dicts (aliases resolved); others ignored."""
        rows: list[dict[str, str | None]] = []
        while True:
            event = self.next()
            if isinstance(event, yaml.SequenceEndEvent):
                break
            if isinstance(event, yaml.MappingStartEvent):
                rows.append(self.mapping(event))
            elif isinstance(event, yaml.AliasEvent):
                kind, value = self.anchors.get(event.anchor, ("", None))
                if kind == "mapping":
                    rows.append(value)
            else:
                self.skip(event)
        if start.anchor:
            self.anchors[start.anchor] = ("sequence", rows)
        return rows

    def mapping(self, start: Any) -> dict[str, str | None]:
        """A mapping's own version/created/digest, ``<<`` merges applied (explicit keys win,
        then earlier merge sources)."""
        fields: dict[str, str | None] = {}
        merges: list[dict[str, str | None]] = []
        while True:
            event = self.next()
            if isinstance(event, yaml.MappingEndEvent):
                break
            key = self.key(event)
            value = self.next()
            if key in _WANTED:
                fields[key] = self.scalar(value)
            elif key == "<<" and not (isinstance(event, yaml.ScalarEvent) and event.style):
                merges.extend(self.merge_sources(value))
            else:
                self.skip(value)
        for source in merges:
            for name, text in source.items():
                fields.setdefault(name, text)
        if start.anchor:
            self.anchors[start.anchor] = ("mapping", fields)
        return fields

    def merge_sources(self, event: Any) -> list[dict[str, str | None]]:
        if isinstance(event, yaml.AliasEvent):
            kind, value = self.anchors.get(event.anchor, ("", None))
            return [value] if kind == "mapping" else []
        if isinstance(event, yaml.MappingStartEvent):
            return [self.mapping(event)]
        if isinstance(event, yaml.SequenceStartEvent):
            sources = []
            while True:
                item = self.next()
                if isinstance(item, yaml.SequenceEndEvent):
                    return sources
                sources.extend(self.merge_sources(item))
        self.skip(event)
        return []

    def skip(self, event: Any) -> None:
        """Pass over a node, remembering anchored nodes inside it."""
        if isinstance(event, yaml.ScalarEvent):
            self.remember_scalar(event)
        elif isinstance(event, yaml.MappingStartEvent):
            if event.anchor:
                self.mapping(event)
                return
            while True:
                item = self.next()
                if isinstance(item, yaml.MappingEndEvent):
                    return
                self.skip(item)
        elif isinstance(event, yaml.SequenceStartEvent):
            if event.anchor:
                self.sequence(event)
                return
            while True:
                item = self.next()
                if isinstance(item, yaml.SequenceEndEvent):
                    return
                self.skip(item)


def _scalar_value(event: Any) -> str | None:
    """The scalar's text as written (Helm keeps ``1.0`` as "1.0"); None for a plain null."""
    if not event.style and event.tag in (None, "tag:yaml.org,2002:null") and (
            event.value in _NULLS):  # plain style is '' from libyaml, None from PyYAML
        return None
    return event.value


def _parse_events(stream: IO[bytes], wanted: frozenset[str] | None) -> ParsedIndex:
    try:
        return _Events(stream, wanted).read()
    except yaml.MarkedYAMLError as exc:
        # problem and position only: the context snippet would quote the body
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise _Malformed(f"not valid YAML: {exc.problem or exc.context}{where}") from None
    except yaml.YAMLError as exc:
        raise _Malformed(f"not valid YAML: {type(exc).__name__}") from None
    except StopIteration:
        raise _Malformed("the YAML stream ended early") from None
    except RecursionError:
        raise _Malformed("nested too deeply") from None


def parse_index(source: bytes | IO[bytes], charts: Collection[str] | None = None, *,
                parser: Parser = "auto") -> ParsedIndex:
    """Parse an index from bytes or a seekable binary stream (tests, tools).

    ``auto`` scans and, when the scanner gives up, rewinds and uses the event parser.
    Raises :class:`ValueError` for a malformed index (the client raises ChartIndexError).
    """
    stream = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    wanted = None if charts is None else frozenset(charts)
    start = stream.tell()
    if parser != "events":
        text = _text_lines(stream)
        try:
            return _scan(text, wanted)
        except _Unsupported as exc:
            if parser == "scan":
                raise ValueError(f"the line scanner cannot read this index: {exc}") from None
        except UnicodeDecodeError:
            raise ValueError("the index is not UTF-8") from None
        finally:
            text.detach()  # leave the caller's stream open
        stream.seek(start)
    try:
        return _parse_events(stream, wanted)
    except _Malformed as exc:
        raise ValueError(str(exc)) from None


def _text_lines(stream: IO[bytes]) -> io.TextIOWrapper:
    """Lines of UTF-8 text (a BOM dropped, CR LF and CR made LF), read 64 KiB at a time."""
    buffered = stream if isinstance(stream, io.BufferedIOBase) else io.BufferedReader(stream)
    return io.TextIOWrapper(buffered, encoding="utf-8-sig", errors="strict", newline=None)


# --- the body stream ----------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


class _Deadline(Exception):
    pass


class _Body(io.RawIOBase):
    """The response body, inflated as it arrives when gzip (or zlib deflate) encoded.

    Reads ``response.raw`` undecoded so wire bytes can be counted and inflation bounded:
    at most ``_INFLATE_STEP`` bytes come out of zlib at a time, and more than ``max_bytes``
    of YAML stops the read (a gzip bomb inflates only that far).
    """

    def __init__(self, response: requests.Response, encoding: str, max_bytes: int,
                 deadline: float) -> None:
        super().__init__()
        self._raw = response.raw
        self._inflater: Any = None
        if encoding in ("gzip", "x-gzip"):
            self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._inflater = zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib or gzip header
        self._gzip = encoding in ("gzip", "x-gzip")
        self._input = b""
        self._output = b""
        self._offset = 0
        self._eof = False
        self.max_bytes = max_bytes
        self.deadline = deadline
        self.wire = 0
        self.decoded = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._offset >= len(self._output):
            if self._eof:
                return 0
            self._fill()
        count = min(len(buffer), len(self._output) - self._offset)
        buffer[:count] = memoryview(self._output)[self._offset:self._offset + count]
        self._offset += count
        return count

    def _fill(self) -> None:
        self._output, self._offset = b"", 0
        if self._inflater is not None and self._input:
            data = self._inflater.decompress(self._input, _INFLATE_STEP)
            self._input = self._inflater.unconsumed_tail
            if self._inflater.eof and self._inflater.unused_data:
                if not self._gzip:
                    raise zlib.error("data after the end of the deflate stream")
                # a further gzip member (concatenated gzip files, as Go's reader accepts)
                self._input = self._inflater.unused_data + self._input
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._emit(data)
            return
        if time.monotonic() > self.deadline:
            raise _Deadline()
        chunk = self._raw.read(_CHUNK, decode_content=False)
        if not chunk:
            self._eof = True
            if self._inflater is not None:
                tail = self._inflater.flush()
                if not self._inflater.eof:
                    raise zlib.error("the compressed body ends early")
                self._emit(tail)
            return
        self.wire += len(chunk)
        if self._inflater is None:
            self._emit(chunk)
        else:
            self._input = chunk

    def _emit(self, data: bytes) -> None:
        self.decoded += len(data)
        if self.decoded > self.max_bytes:
            raise _TooLarge()
        self._output = data


class _NoAuthorization(AuthBase):
    """Sends no ``Authorization`` at all: not the session's, not ``~/.netrc``'s."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.pop("Authorization", None)
        return request


class _Basic(AuthBase):
    """Basic credentials as UTF-8 (requests would encode str as Latin-1; Go sends UTF-8)."""

    def __init__(self, username: str, password: str) -> None:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._header = f"Basic {token}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "_Basic(<redacted>)"


# --- the client ---------------------------------------------------------------------------------


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _outcome(status: int) -> str:
    if status == 304:
        return "not_modified"
    if status in _REDIRECTS:
        return "redirect"
    if 200 <= status < 300:
        return "ok"
    return {401: "unauthorized", 403: "forbidden", 404: "not_found",
            429: "rate_limited"}.get(status, "server_error" if status >= 500 else "client_error")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, requests.Timeout | urllib3.exceptions.TimeoutError):
        return "timed out"
    if isinstance(exc, requests.exceptions.SSLError | urllib3.exceptions.SSLError | ssl.SSLError):
        return "TLS verification or handshake failed"
    if isinstance(exc, requests.ConnectionError | urllib3.exceptions.ProtocolError
                  | ConnectionError):
        return "connection failed"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection failed"
    return type(exc).__name__


class ChartRepositoryClient:
    """One chart repository (``HelmRepository.spec.url``) with one credential set.

    ``username``/``password`` come from the ``secretRef``; ``ca_pem``/``cert_pem``/``key_pem``
    from the ``certSecretRef`` (``ca.crt``, ``tls.crt``, ``tls.key``). The CA is added to the
    default trust (``ca_file`` if given, else ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, else
    certifi's), as Flux adds it to the system pool. PEMs go to 0600 files in a private 0700
    directory, removed by :meth:`close` (or when the client is collected). Plain ``http://``
    URLs are allowed, as Flux allows them for this type. ``observer(kind, outcome)`` is called
    once per HTTP request (``kind`` is ``index``). Fetches are serialised by a lock.
    """

    def __init__(self, url: str, *, username: str | None = None, password: str | None = None,
                 ca_pem: bytes | None = None, cert_pem: bytes | None = None,
                 key_pem: bytes | None = None, insecure_skip_verify: bool = False,
                 timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
                 session: requests.Session | None = None, observer: Observer | None = None,
                 ca_file: str | None = None, max_index_bytes: int = DEFAULT_MAX_INDEX_BYTES,
                 deadline: float = DEFAULT_DEADLINE, parser: Parser = "auto") -> None:
        parts = urlsplit(url.strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError("a chart repository URL must be http(s)://host/...")
        try:
            parts.port  # noqa: B018 - validates the port
        except ValueError:
            raise ValueError("the chart repository URL has an invalid port") from None
        if parts.username is not None or parts.password is not None:
            raise ValueError("credentials belong in the HelmRepository's secretRef, not its URL")
        if (cert_pem is None) != (key_pem is None):
            raise ValueError("a client certificate needs both tls.crt and tls.key")
        if parser not in ("auto", "scan", "events"):
            raise ValueError(f"unknown parser {parser!r}")
        # Flux appends index.yaml to the URL's path, keeping its query.
        path = parts.path.rstrip("/") + "/index.yaml"
        self.index_url = urlunsplit((parts.scheme.lower(), parts.netloc, path, parts.query, ""))
        self.host = parts.netloc
        self.display_url = f"{parts.scheme.lower()}://{parts.netloc}{path}"  # no query
        self.username = username or ""
        self._password = password or ""
        self.timeout = timeout
        self.observer = observer
        self.max_index_bytes = max_index_bytes
        self.deadline = deadline
        self.parser: Parser = parser
        self.needs_event_parser = False  # "auto" learnt that this index needs libyaml
        self.accept_encoding = "gzip"  # "identity" to measure an uncompressed transfer
        self.parses = 0  # bodies parsed (a scanner hand-over counts twice)
        self.etag: str | None = None
        self.last_modified: str | None = None
        self._covered: frozenset[str] | None = None  # charts the validators' result holds
        self._validated = False  # etag/last_modified belong to a complete, parsed result
        self._lock = threading.Lock()
        self._dir: str | None = None
        self._finalizer: Any = None
        self.cert: tuple[str, str] | None = None
        verify: bool | str = ca_file or True
        if ca_pem is not None or cert_pem is not None:
            self._dir = tempfile.mkdtemp(prefix="headwind-chartrepo-")  # 0700
            self._finalizer = weakref.finalize(self, shutil.rmtree, self._dir, True)
        try:
            if ca_pem is not None:
                if b"-----BEGIN CERTIFICATE-----" not in ca_pem:
                    raise ValueError("ca.crt holds no PEM certificate")
                verify = self._write("ca.crt", _trust_base(ca_file) + b"\n" + ca_pem + b"\n")
            if cert_pem is not None and key_pem is not None:
                self.cert = (self._write("tls.crt", cert_pem), self._write("tls.key", key_pem))
                try:
                    ssl.create_default_context().load_cert_chain(*self.cert)
                except (ssl.SSLError, OSError):
                    raise ValueError("tls.crt and tls.key are not a matching PEM certificate "
                                     "and unencrypted key") from None
        except BaseException:
            self.close()
            raise
        # Passed with every request: requests lets REQUESTS_CA_BUNDLE override session.verify.
        self.verify: bool | str = False if insecure_skip_verify else verify
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=2)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        session.headers.setdefault("User-Agent", USER_AGENT)
        self.session = session
        self._auth: AuthBase | None = (_Basic(self.username, self._password)
                                       if self.username or self._password else None)
        self._origin = _origin(self.index_url)

    def __repr__(self) -> str:
        return f"ChartRepositoryClient({self.display_url!r})"

    def __enter__(self) -> ChartRepositoryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the session and remove the PEM files."""
        if getattr(self, "session", None) is not None:
            self.session.close()
        if self._finalizer is not None:
            self._finalizer()  # rmtree, once

    def _write(self, name: str, data: bytes) -> str:
        assert self._dir is not None
        path = os.path.join(self._dir, name)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        return path

    # -- public API ----------------------------------------------------------------------------

    def fetch(self, charts: Collection[str] | None = None, *,
              force: bool = False) -> IndexResult | Literal[_NotModifiedType.NOT_MODIFIED]:
        """The versions of ``charts`` (all charts when None), or :data:`NotModified`.

        Conditional headers from the last successful fetch are sent when that fetch's result
        covers the charts asked for now (it read all charts, or a superset), so
        :data:`NotModified` always means "your previous result still holds"; ``force`` sends
        none. Raises the :mod:`registry.client` errors and :class:`ChartIndexError`.
        """
        if isinstance(charts, str):
            raise TypeError("charts is a collection of chart names, not one name")
        wanted = None if charts is None else frozenset(charts)
        with self._lock:
            conditional = not force and self._validated and (
                self._covered is None or (wanted is not None and wanted <= self._covered))
            started = time.monotonic()
            response, requests_made = self._get(conditional)
            if response.status_code == 304:
                response.close()
                return NotModified
            use_events = self.parser == "events" or self.needs_event_parser
            try:
                parsed, body = self._parse(response, wanted, "events" if use_events else "scan",
                                           started)
            except _Unsupported as exc:
                response.close()
                log.info("chart index %s: the line scanner stopped at %s; reading it again "
                         "with the YAML event parser", self.display_url, exc)
                response, more = self._get(False)
                requests_made += more
                parsed, body = self._parse(response, wanted, "events", time.monotonic())
                self.needs_event_parser = True  # for this repository, from now on
            finally:
                response.close()
            etag = response.headers.get("ETag") or None
            last_modified = response.headers.get("Last-Modified") or None
            self.etag, self.last_modified = etag, last_modified
            self._validated = bool(etag or last_modified)
            self._covered = wanted
            return IndexResult(parsed.versions, etag, last_modified, body.wire, body.decoded,
                               parsed.api_version, parsed.skipped, parsed.parser, requests_made)

    def forget(self) -> None:
        """Drop the validators: the next fetch is unconditional."""
        with self._lock:
            self.etag = self.last_modified = None
            self._validated = False

    # -- HTTP ----------------------------------------------------------------------------------

    def _get(self, conditional: bool) -> tuple[requests.Response, int]:
        """GET the index, following redirects here (checked, credentials kept home).

        Returns the final 200/304 response, streaming, and how many requests it took.
        """
        headers = {"Accept-Encoding": self.accept_encoding,
                   "Accept": "application/x-yaml, application/yaml, text/yaml, */*"}
        if conditional:
            if self.etag:
                headers["If-None-Match"] = self.etag
            if self.last_modified:
                headers["If-Modified-Since"] = self.last_modified
        url = self.index_url
        for hop in range(MAX_REDIRECTS + 1):
            home = _origin(url) == self._origin
            auth = self._auth if home and self._auth is not None else _NoAuthorization()
            response = self._send(url, headers, auth)
            status = response.status_code
            if status not in _REDIRECTS:
                self._raise_for(response, conditional, home)
                return response, hop + 1
            location = response.headers.get("Location", "")
            response.close()
            if hop == MAX_REDIRECTS:
                raise RegistryError(self.host, status,
                                    f"index {self.display_url}: more than {MAX_REDIRECTS} "
                                    "redirects")
            url = self._redirect_target(url, location, status)
        raise AssertionError("unreachable")

    def _redirect_target(self, current: str, location: str, status: int) -> str:
        if not location:
            raise RegistryError(self.host, status,
                                f"index {self.display_url}: redirect without a Location")
        target = urljoin(current, location.strip())
        parts = urlsplit(target)
        try:
            port = parts.port
        except ValueError:
            port = None
            parts = parts._replace(netloc="")
        if parts.scheme.lower() not in ("http", "https"):
            raise RegistryError(self.host, status, f"index {self.display_url}: redirect to "
                                "a non-http(s) URL refused")
        if not parts.hostname:
            raise RegistryError(self.host, status, f"index {self.display_url}: redirect to "
                                "an invalid host refused")
        problem = realm_address_problem(parts.hostname, port)
        if problem:
            problem = problem.replace("token realm host", "host").replace("token realm", "host")
            raise RegistryError(self.host, status,
                                f"index {self.display_url}: redirect refused: {problem}")
        netloc = parts.netloc.rpartition("@")[2]  # never credentials from a Location
        return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))

    def _send(self, url: str, headers: dict[str, str], auth: AuthBase) -> requests.Response:
        try:
            response = self.session.get(url, headers=headers, auth=auth, timeout=self.timeout,
                                        allow_redirects=False, verify=self.verify,
                                        cert=self.cert, stream=True)
        except requests.RequestException as exc:
            self._observe("connection_error")
            raise RegistryServerError(self.host, None, self._scrub(
                f"index {self.display_url}: {_describe(exc)}")) from None
        self._observe(_outcome(response.status_code))
        return response

    def _observe(self, outcome: str) -> None:
        if self.observer is not None:
            try:
                self.observer("index", outcome)
            except Exception:  # noqa: BLE001 - metrics must never break a fetch
                log.exception("chart repository observer failed")

    def _raise_for(self, response: requests.Response, conditional: bool, home: bool) -> None:
        status = response.status_code
        if status == 200 or (status == 304 and conditional):
            return
        response.close()
        reason = (response.reason or "")[:100]
        text = f"index {self.display_url}: {status} {reason}".rstrip()
        if status in (401, 403):
            if not home:
                text += " (from a redirect target on another host: credentials are not sent "
                text += "there)"
            elif self._auth is None:
                text += " (no credentials configured)"
            else:
                text += " (credentials refused)"
            raise RegistryAuthError(self.host, status, self._scrub(text))
        if status == 404:
            raise RegistryNotFound(self.host, status, self._scrub(text))
        if status == 429:
            raise RegistryRateLimited(self.host, status, self._scrub(text),
                                      parse_retry_after(response.headers.get("Retry-After")))
        if status >= 500:
            raise RegistryServerError(self.host, status, self._scrub(text))
        if status == 304:
            text += " (not asked for)"
        raise RegistryError(self.host, status, self._scrub(text))

    def _scrub(self, text: str) -> str:
        """Defence in depth: nothing a server echoes back (a reason phrase) holds the password."""
        if self._password:
            text = text.replace(self._password, "<redacted>")
        return text

    # -- parsing -------------------------------------------------------------------------------

    def _parse(self, response: requests.Response, wanted: frozenset[str] | None,
               parser: str, started: float) -> tuple[ParsedIndex, _Body]:
        encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding not in ("identity", "gzip", "x-gzip", "deflate"):
            raise ChartIndexError(self.host, response.status_code,
                                  f"index {self.display_url}: unsupported Content-Encoding "
                                  f"{encoding[:40]!r}")
        body = _Body(response, encoding, self.max_index_bytes, started + self.deadline)
        stream = io.BufferedReader(body, _CHUNK)
        self.parses += 1
        try:
            if parser == "events":
                parsed = _parse_events(stream, wanted)
            else:
                parsed = _scan(_text_lines(stream), wanted)
        except _Unsupported as exc:
            if self.parser == "scan":
                raise self._index_error(response, "outside the YAML the line scanner reads "
                                        f"(parser='scan'): {exc}") from None
            raise
        except _Malformed as exc:
            raise self._index_error(response, str(exc)) from None
        except UnicodeDecodeError:
            raise self._index_error(response, "not UTF-8 text") from None
        except zlib.error:
            raise self._index_error(response, "the body is not valid gzip/deflate") from None
        except _TooLarge:
            raise self._index_error(response, f"larger than {self.max_index_bytes} bytes "
                                    "inflated") from None
        except _Deadline:
            raise RegistryServerError(self.host, response.status_code,
                                      f"index {self.display_url}: reading it took more than "
                                      f"{self.deadline:.0f}s") from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise RegistryServerError(self.host, response.status_code, self._scrub(
                f"index {self.display_url}: reading the body failed: {_describe(exc)}"
            )) from None
        return parsed, body

    def _index_error(self, response: requests.Response, problem: str) -> ChartIndexError:
        return ChartIndexError(self.host, response.status_code,
                               self._scrub(f"index {self.display_url}: {problem}"))


def _trust_base(ca_file: str | None) -> bytes:
    """The default trust the repository's CA is added to."""
    path = (ca_file or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            or requests.certs.where())
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        log.warning("CA bundle %s is unreadable; trusting only the repository's CA", path)
        return b""
