"""Tables for asset and check metadata, small enough to read inline in the Dagster UI."""

from collections.abc import Sequence
from typing import Any

import dagster as dg

MAX_ROWS = 10  # the UI shows a metadata table inline; longer detail stays in the database


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def inline_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> dg.TableMetadataValue:
    """A table the UI draws inline (a markdown value hides behind "[Show Markdown]"): at most
    MAX_ROWS rows of text cells; name where the full detail is in a metadata value next to it."""
    columns = [dg.TableColumn(name, "string") for name in header]
    records = [
        dg.TableRecord({name: _cell(v) for name, v in zip(header, row, strict=True)})
        for row in rows[:MAX_ROWS]
    ]
    return dg.MetadataValue.table(records, dg.TableSchema(columns))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = f"{value:.4f}" if isinstance(value, float) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
