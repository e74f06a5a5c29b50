"""The report's tables: a pandas frame of ready-formatted cells → HTML.

Every piece of text (the id, each header, each cell, each class) is escaped here; the
only :class:`~markupsafe.Markup` is the tags this module writes around it, so a name or
a note read from a file stays text on the page.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

import pandas as pd
from markupsafe import Markup


def _cell(tag: str, text: object, classes: Iterable[str], span: int = 1) -> Markup:
    attrs = Markup("")
    names = " ".join(c for c in classes if c)
    if names:
        attrs += Markup(' class="{}"').format(names)
    if span > 1:
        attrs += Markup(' colspan="{}"').format(span)
    return Markup("<{0}{1}>{2}</{0}>").format(Markup(tag), attrs, str(text))


def _header(columns: Sequence[Hashable], numeric: set[Hashable]) -> list[Markup]:
    """One row per column level (a MultiIndex has several); above the last, a label
    spans the neighbouring columns that share it and every label above it."""
    labels = [c if isinstance(c, tuple) else (c,) for c in columns]
    depth = len(labels[0]) if labels else 1
    rows = []
    for level in range(depth):
        spans: list[list] = []  # [label, span, first column]
        for j, label in enumerate(labels):
            if level < depth - 1 and spans and labels[j - 1][:level + 1] == label[:level + 1]:
                spans[-1][1] += 1
            else:
                spans.append([label[level], 1, j])
        last = level == depth - 1
        cells = [_cell("th", text, ["num" if last and columns[j] in numeric else ""], span)
                 for text, span, j in spans]
        rows.append(Markup("<tr>{}</tr>").format(Markup("").join(cells)))
    return rows


def html_table(frame: pd.DataFrame, table_id: str, *, numeric: Iterable[Hashable] = (),
               row_status: Sequence[str] | None = None, status_column: Hashable | None = None,
               extra: Mapping[Hashable, str] | None = None) -> Markup:
    """``frame`` (every cell already a string) as an HTML table with CSS classes per cell,
    its id ``T_<table_id>``, in a horizontally scrolling box.

    ``numeric`` columns are right-aligned (class ``num``); ``row_status`` marks whole rows
    (``missing``, ``invalid``, ``partial``); cells of ``status_column`` get
    ``status status-<value>``; ``extra`` adds classes per column. All text is escaped.
    """
    numeric = set(numeric)
    extra = dict(extra or {})
    columns = list(frame.columns)
    body = []
    for i, row in enumerate(frame.itertuples(index=False, name=None)):
        status = row_status[i] if row_status is not None else "ok"
        cells = []
        for column, text in zip(columns, row, strict=True):
            classes = ["num" if column in numeric else "txt", extra.get(column, "")]
            if column == status_column:
                classes += ["status", f"status-{text}"]
            if status and status != "ok":
                classes.append(f"row-{status}")
            cells.append(_cell("td", text, classes))
        body.append(Markup("<tr>{}</tr>").format(Markup("").join(cells)))
    return Markup(
        '<div class="scroll"><table id="T_{}" class="tbl">\n<thead>\n{}\n</thead>\n'
        '<tbody>\n{}\n</tbody>\n</table></div>'
    ).format(table_id, Markup("\n").join(_header(columns, numeric)), Markup("\n").join(body))
