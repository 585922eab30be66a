"""Spreadsheet-safe CSV cells, both ways: the export guards a cell a spreadsheet would run as a formula with a
leading apostrophe (``selectors.export``), the import takes it off again (``services.files``)."""

from __future__ import annotations

import re

# A cell a spreadsheet would run as a formula (= + - @ tab CR), after any apostrophes the export added to guard it.
CSV_FORMULA = re.compile(r"'*[=+\-@\t\r]")


def csv_safe(value: str) -> str:
    """Spreadsheets run cells that start like a formula (= + - @ tab CR); a leading apostrophe keeps them
    text. Cells that are apostrophes then a formula start get one more, so that the import, which takes
    one off, reads back exactly what was exported."""
    return "'" + value if CSV_FORMULA.match(value) else value


def csv_unescape(value: str) -> str:
    """The cell as it was before :func:`csv_safe` guarded it."""
    return value[1:] if value.startswith("'") and CSV_FORMULA.match(value) else value
