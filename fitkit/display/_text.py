"""A `Display` as plain text: the same cells and tables as its HTML, in words and aligned columns."""

from __future__ import annotations

import textwrap

from ._model import BAD, Box, Display, Table

__all__ = ["render_text", "WIDTH"]

# Lines are wrapped at this width (a terminal's, or a notebook's text output).
WIDTH = 110
# A table entry out of range (a high R-hat) ends with this mark: text has no colours.
BAD_MARK = " !"


def _box(box: Box) -> list[str]:
    lines = [f"{box.title}:"]
    for row in box.rows:
        # Break a row between cells, never inside one, unless a cell is wider than a line itself.
        current = ""
        for cell in row:
            joined = f"{current} | {cell.line}" if current else cell.line
            if current and len(joined) + 2 > WIDTH:
                lines.append("  " + current)
                current = cell.line
            else:
                current = joined
        lines += textwrap.wrap(current, WIDTH, initial_indent="  ", subsequent_indent="    ") or ["  "]
    return lines


def _table(table: Table) -> list[str]:
    texts = [[e.text + (BAD_MARK if e.state == BAD else "") for e in row] for row in table.rows]
    widths = [max([len(c), *(len(row[i]) for row in texts)]) for i, c in enumerate(table.columns)]

    def line(cells):
        # Names and marks read left to right; numbers line up on the right.
        parts = [
            cell.ljust(w) if column in ("Name", "Mark") else cell.rjust(w)
            for cell, w, column in zip(cells, widths, table.columns)
        ]
        return "  " + "  ".join(parts).rstrip()

    lines = [f"{table.title}:"] if table.title else []
    lines += [line(table.columns), "  " + "  ".join("-" * w for w in widths)]
    lines += [line(row) for row in texts]
    if table.omitted:
        lines.append(f"  ... and {table.omitted} more rows not shown")
    return lines


def render_text(shown: Display) -> str:
    """The display as text: the summary line, the validity boxes, the tables and the notes."""
    lines = [shown.summary]
    for box in shown.boxes:
        lines += _box(box)
    for table in shown.tables:
        lines += _table(table)
    if any(e.state == BAD for table in shown.tables for row in table.rows for e in row):
        lines.append(f"  ({BAD_MARK.strip()} marks a value out of its good range)")
    for note in shown.notes:
        lines += textwrap.wrap(note, WIDTH, initial_indent="  - ", subsequent_indent="    ")
    return "\n".join(lines)
