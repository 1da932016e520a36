"""Untrusted text, made safe for the medium it is shown in: terminal, Markdown, HTML, JSON.

Bundle names, recipe names, labels, notes, CPU model strings and device ids come from manifests, result
files and devices - all untrusted. Shown raw, ``[link=https://evil.example]`` becomes a hyperlink in the
terminal, ``\\x1b[2J`` clears it, ``[/x]`` crashes rich, and ``|``, newlines or ``<script>`` in a Markdown or
HTML report forge table rows and run code. Every renderer passes such strings through one function here,
at the point where it renders them (never earlier: the data stays as it came, for JSON).
"""

from __future__ import annotations

import html as _html
import math
import re
from typing import Any

from rich.markup import escape as _rich_escape

#: C0 and C1 controls, DEL, and the Unicode bidirectional overrides that reorder what a reader sees
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def plain(value: Any) -> str:
    """One line of printable text: every control character (ESC, newline, CR, bidi overrides) shown as a
    visible escape such as ``\\x1b`` instead of acting on the reader's screen."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(value))


def terminal(value: Any) -> str:
    """For rich markup strings (console.print, table cells, titles): plain, then rich's markup escaped."""
    return _rich_escape(plain(value))


def markdown(value: Any) -> str:
    """For a Markdown table cell or heading: plain, HTML-escaped (Markdown passes raw HTML through), and
    ``|``, backslash, backtick and the emphasis/link characters escaped so a value stays inside its cell."""
    text = _html.escape(plain(value), quote=False)
    return re.sub(r"([\\|`*_\[\]])", r"\\\1", text)


def html(value: Any) -> str:
    """For HTML text or an attribute value."""
    return _html.escape(plain(value), quote=True)


def finite(value: Any) -> Any:
    """A JSON-safe copy: NaN and ±Infinity become null (strict JSON parsers reject them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value
