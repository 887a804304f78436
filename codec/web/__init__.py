"""The generated pages' HTML, CSS and JavaScript (files beside this one) and their filling.

Templates name their slots `$name` (string.Template): filling is one pass, so a value that
contains `$` (a file name) is never filled again. Values are inserted as given: escape text
(html.escape) and JSON (codec.web.script_json) before.
"""

from __future__ import annotations

import json
from importlib.resources import files
from string import Template


def asset(name: str) -> str:
    """The text of codec/web/NAME."""
    return files(__name__).joinpath(name).read_text(encoding="utf-8")


def render(template: str, **values) -> str:
    """codec/web/TEMPLATE with its $slots filled; a missing slot is a KeyError."""
    return Template(asset(template)).substitute(values)


def script_json(value) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' left as such (so no
    '</script>' or '<!--'), and no line separators that old parsers end a string at."""
    text = json.dumps(value, ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
