"""The report's tables: a pandas frame of ready-formatted cells → escaped HTML."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
from markupsafe import Markup
from pandas.io.formats.style import Styler


def html_table(frame: pd.DataFrame, table_id: str, *, numeric: Iterable[str] = (),
               row_status: Sequence[str] | None = None, status_column: str | None = None,
               extra: Mapping[str, str] | None = None) -> Markup:
    """``frame`` (every cell already a string) as an HTML table with CSS classes per cell,
    its id ``T_<table_id>``, in a horizontally scrolling box.

    ``numeric`` columns are right-aligned (class ``num``); ``row_status`` marks whole rows
    (``missing``, ``invalid``, ``partial``); cells of ``status_column`` get
    ``status status-<value>``; ``extra`` adds classes per column. Cell text is escaped.
    """
    numeric = set(numeric)
    extra = dict(extra or {})
    classes = pd.DataFrame("", index=frame.index, columns=frame.columns)
    for column in frame.columns:
        base = "num" if column in numeric else "txt"
        classes[column] = f"{base} {extra.get(column, '')}".strip()
    if status_column is not None:
        classes[status_column] = [f"{c} status status-{v}" for c, v in
                                  zip(classes[status_column], frame[status_column], strict=True)]
    if row_status is not None:
        for i, status in enumerate(row_status):
            if status and status != "ok":
                classes.iloc[i] = classes.iloc[i] + f" row-{status}"
    styler = (Styler(frame, uuid=table_id, cell_ids=False)
              .hide(axis="index").set_td_classes(classes).format(escape="html"))
    text = styler.to_html(table_attributes='class="tbl"')
    text = re.sub(r'<style type="text/css">\s*</style>\s*', "", text)
    for j, column in enumerate(frame.columns):
        if column in numeric:
            text = re.sub(f'class="col_heading (level[0-9]+) col{j}"( >|>)',
                          f'class="col_heading \\1 col{j} num"\\2', text)
    return Markup(f'<div class="scroll">{text.strip()}</div>')
