"""MkDocs hook: the code's docstrings use Sphinx roles (``:func:`x```); show them as code.

mkdocstrings renders ``:func:`flow``` as the text ``:func:`` followed by
``flow`` in code; this drops the role name, leaving the code. A paragraph
ending in reStructuredText's ``::`` (a literal block follows) ends in one
colon, or disappears when it was nothing else.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:func|class|mod|meth|data|attr|exc|obj):(?=<code>)")
_LITERAL_ALONE = re.compile(r"<p>::</p>\n?")
_LITERAL_END = re.compile(r"::</p>")


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Remove Sphinx role names before inline code, and literal-block markers."""
    html = _ROLE.sub("", html)
    html = _LITERAL_ALONE.sub("", html)
    return _LITERAL_END.sub(":</p>", html)
