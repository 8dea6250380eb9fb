"""CSV text that a spreadsheet shows as text and never runs as a formula.

Class names, class ids and file names are user-controlled: a cell such as `=cmd|' /C calc'!A0` or
`@SUM(1)` would be evaluated by Excel, LibreOffice or Google Sheets when the CSV is opened. Every
CSV nhl writes from such text goes through `csv_text`, which prefixes a single quote `'` to each
text cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return (the usual
spreadsheet-safe rule); spreadsheets show the quote-prefixed cell as the literal text. Numbers given
as numbers (int, float) are written unchanged, so a negative count stays a number.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """`value`, with a `'` in front when it is text a spreadsheet would read as a formula.

    >>> safe_cell("=1+1"), safe_cell("tench"), safe_cell(-3)
    ("'=1+1", 'tench', -3)
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(header: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """A header and rows as CSV text ("\\n" line ends), every cell through `safe_cell`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([safe_cell(c) for c in header])
    for row in rows:
        writer.writerow([safe_cell(c) for c in row])
    return buf.getvalue()
