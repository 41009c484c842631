"""A `Display` as HTML for notebooks: tables with inline styles, no external CSS or JavaScript."""

from __future__ import annotations

from html import escape

from ._format import full
from ._model import BAD, GOOD, INFO, WARN, Box, Display, Entry, Table

__all__ = ["render_html", "COLOURS"]

# Background colours by state. Inline, because notebook front ends (GitHub, nbviewer,
# VS Code) drop <style> blocks; the class names stay for pages that do style them.
COLOURS = {GOOD: "#c8e6c9", BAD: "#ffcdd2", WARN: "#ffe0b2", INFO: "#f5f5f5"}
# Black text on the light backgrounds, so a dark notebook theme keeps the cells readable.
CELL = "padding:2px 8px;border:1px solid #bbb;color:#000;"
HEAD = "padding:2px 8px;border:1px solid #bbb;background-color:#e0e0e0;color:#000;text-align:center;"
# width:auto: some notebook themes (mkdocs-jupyter's) size tables to max-content, which
# would stretch a long reason cell to thousands of pixels instead of wrapping it.
TABLE = "border-collapse:collapse;margin:4px 0;font-family:monospace;font-size:90%;width:auto;"


def _style(state: str | None, align: str) -> str:
    colour = f"background-color:{COLOURS[state]};" if state else ""
    return f"{CELL}{colour}text-align:{align};"


def _box(box: Box) -> str:
    width = max((sum(cell.span for cell in row) for row in box.rows), default=1)
    parts = [
        f'<table class="fitkit-validity" style="{TABLE}">',
        f'<tr><th colspan="{width}" style="{HEAD}">{escape(box.title)}</th></tr>',
    ]
    for row in box.rows:
        cells = []
        used = sum(cell.span for cell in row)
        for k, cell in enumerate(row):
            # The last cell of a short row takes the rest of the width, so the grid stays square.
            span = cell.span + (width - used if k == len(row) - 1 else 0)
            cells.append(
                f'<td class="fitkit-cell fitkit-{cell.state}" data-key="{escape(cell.key)}" '
                f'colspan="{span}" style="{_style(cell.state, "left" if span > 1 else "center")}">'
                f"<b>{escape(cell.label)}</b>: {escape(cell.text)}</td>"
            )
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    return "".join(parts)


def _entry(entry: Entry, name: str) -> str:
    title = full(entry.value) if entry.value is not None else entry.note
    title = f' title="{escape(title)}"' if title else ""
    state = f" fitkit-{entry.state}" if entry.state else ""
    align = "left" if name == "Name" or name == "Mark" else "right"
    return f'<td class="fitkit-entry{state}"{title} style="{_style(entry.state, align)}">{escape(entry.text)}</td>'


def _table(table: Table) -> str:
    parts = [f'<table class="fitkit-params" style="{TABLE}">']
    if table.title:
        parts.append(f'<caption style="text-align:left;font-weight:bold">{escape(table.title)}</caption>')
    parts.append(
        "<thead><tr>"
        + "".join(f'<th style="{HEAD}">{escape(c)}</th>' for c in table.columns)
        + "</tr></thead>"
    )
    parts.append("<tbody>")
    for row in table.rows:
        parts.append("<tr>" + "".join(_entry(e, c) for e, c in zip(row, table.columns)) + "</tr>")
    parts.append("</tbody></table>")
    if table.omitted:
        parts.append(f'<p class="fitkit-omitted">... and {table.omitted} more rows not shown</p>')
    return "".join(parts)


def render_html(shown: Display) -> str:
    """The display as one `<div>` of HTML tables with inline styles (names and texts escaped)."""
    parts = [f'<div class="fitkit-display" title="{escape(shown.summary)}">']
    parts += [_box(box) for box in shown.boxes]
    parts += [_table(table) for table in shown.tables]
    if shown.notes:
        parts.append(
            '<ul class="fitkit-notes">' + "".join(f"<li>{escape(n)}</li>" for n in shown.notes) + "</ul>"
        )
    parts.append("</div>")
    return "".join(parts)
