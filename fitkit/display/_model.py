"""What a display shows, before it is written as HTML or text: cells, boxes of cells and tables."""

from __future__ import annotations

import dataclasses

__all__ = ["GOOD", "BAD", "WARN", "INFO", "STATES", "Cell", "Box", "Entry", "Table", "Display"]

# The state of a cell, which sets its colour: fine, wrong, worth a look, or just a fact.
GOOD, BAD, WARN, INFO = "good", "bad", "warn", "info"
STATES = (GOOD, BAD, WARN, INFO)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One cell of a validity box: `label: text`, coloured by `state`.

    Attributes:
        key: a fixed machine name (`"valid"`, `"edm"`), written as `data-key` in HTML.
        label: the name a reader sees (`"EDM"`).
        text: the value in words (`"1.2e-10 (max 1e-08)"`, `"NO (call_limit)"`).
        state: one of `GOOD`, `BAD`, `WARN`, `INFO`.
        span: how many columns of its box the cell spans (the reason spans them all).
    """

    key: str
    label: str
    text: str
    state: str = INFO
    span: int = 1

    def __post_init__(self):
        if self.state not in STATES:
            raise ValueError(f"a cell's state is one of {STATES}, got {self.state!r}")

    @property
    def line(self) -> str:
        """The cell as plain text, `label: text`, the same words as its HTML."""
        return f"{self.label}: {self.text}"


@dataclasses.dataclass(frozen=True)
class Box:
    """A titled grid of cells (iminuit's validity display): rows of cells."""

    title: str
    rows: tuple[tuple[Cell, ...], ...]

    def cells(self) -> list[Cell]:
        """Every cell, row by row."""
        return [cell for row in self.rows for cell in row]


@dataclasses.dataclass(frozen=True)
class Entry:
    """One cell of a table: its text, the number behind it (kept in full) and a state for its colour.

    Attributes:
        text: what is shown (`"1.235"`).
        value: the number to every digit, written as the HTML cell's `title` so a reader can copy it.
        state: `GOOD`, `BAD`, `WARN`, `INFO`, or None for an uncoloured cell.
        note: a longer explanation (why an error is missing), the HTML `title` when there is no value.
    """

    text: str
    value: float | None = None
    state: str | None = None
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Table:
    """A table of params: column headers and rows of entries (the first is the name).

    Attributes:
        columns: the headers.
        rows: one tuple of entries per row, as many as `columns`.
        omitted: rows left out to keep the display short (said under the table).
        title: a caption.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[Entry, ...], ...]
    omitted: int = 0
    title: str = ""

    def __post_init__(self):
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"a row has {len(row)} entries for {len(self.columns)} columns")

    def column(self, name: str) -> list[Entry]:
        """The entries of column `name`, top to bottom."""
        index = self.columns.index(name)
        return [row[index] for row in self.rows]


@dataclasses.dataclass(frozen=True)
class Display:
    """A result shown as a notebook table (`_repr_html_`) and as text (`str`), from the same cells.

    Attributes:
        title: what is shown (`"FitResult"`).
        summary: one line saying it all (the class's short repr).
        boxes: validity boxes.
        tables: parameter (and correlation) tables.
        notes: sentences shown under the tables.

    Example:
        >>> shown = fk.display.display(res, covariance=cov, problem=prob)
        >>> shown           # in a notebook: the coloured tables
        >>> print(shown)    # the same cells as text
    """

    title: str
    summary: str
    boxes: tuple[Box, ...] = ()
    tables: tuple[Table, ...] = ()
    notes: tuple[str, ...] = ()

    def cells(self) -> dict[str, Cell]:
        """Every validity cell by key (the first box's cell wins where two boxes share a key)."""
        found: dict[str, Cell] = {}
        for box in self.boxes:
            for cell in box.cells():
                found.setdefault(cell.key, cell)
        return found

    def _repr_html_(self) -> str:
        from ._html import render_html

        return render_html(self)

    def __str__(self) -> str:
        from ._text import render_text

        return render_text(self)

    __repr__ = __str__
