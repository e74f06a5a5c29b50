"""The report page as the tests read it, the check that its summary equals the data, and
headless chromium to open it."""

from __future__ import annotations

import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd

from sdkd.report.fmt import fmt_metric

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}
URL_ATTRS = {"src", "href", "srcset", "action", "formaction", "data", "poster", "background",
             "xlink:href", "cite", "longdesc"}
CHROMIUM = Path("/usr/bin/chromium")

class Page(HTMLParser):
    """Everything the tests look at, plus a check that every element is closed in order."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.errors: list[str] = []
        self.stack: list[str] = []
        self.ids: list[str] = []
        self.urls: list[tuple[str, str, str]] = []
        self.tags: list[tuple[str, dict]] = []
        self.images: list[dict] = []
        self.styles: list[str] = []
        self.tables: dict[str, dict] = {}
        self.captions: list[tuple[str | None, str]] = []
        self.section_text: dict[str, list[str]] = {}
        self.verdicts: dict[str, list[tuple[str, str]]] = {}
        self._section: str | None = None
        self._table: dict | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._caption: list[str] | None = None
        self._style: list[str] | None = None
        self._verdict: tuple[str, list[str]] | None = None
        self._summary_of: str | None = None
        self.feed(text)
        self.close()
        if self.stack:
            self.errors.append(f"never closed: {self.stack}")

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag not in VOID:
            self.stack.append(tag)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        for name, value in attrs.items():
            if name in URL_ATTRS:
                self.urls.append((tag, name, value or ""))
        if tag == "section":
            self._section = attrs.get("id")
        elif tag == "div" and attrs.get("class") == "ds-summary":
            self._summary_of = attrs["id"].removeprefix("summary-")
        elif tag == "img":
            self.images.append({**attrs, "section": self._section})
        elif tag == "table":
            self._table = {"section": self._section, "head": [], "body": [], "classes": []}
            self.tables[attrs.get("id", f"table-{len(self.tables)}")] = self._table
            self._in_head = False
        elif tag == "thead":
            self._in_head = True
        elif tag == "tbody":
            self._in_head = False
        elif tag == "tr":
            self._row = []
            self._row_classes: set[str] = set()
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
            self._row_classes |= set((attrs.get("class") or "").split())
        elif tag == "figcaption":
            self._caption = []
        elif tag == "style":
            self._style = []
        elif tag == "li" and (attrs.get("class") or "").startswith("tone-"):
            self._verdict = (attrs["class"].removeprefix("tone-"), [])

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            part = "head" if self._in_head else "body"
            self._table[part].append(self._row)
            if part == "body":
                self._table["classes"].append(self._row_classes)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "figcaption":
            self.captions.append((self._section, " ".join("".join(self._caption).split())))
            self._caption = None
        elif tag == "style":
            self.styles.append("".join(self._style))
            self._style = None
        elif tag == "li" and self._verdict is not None:
            tone, text = self._verdict
            key = self._summary_of or ""
            self.verdicts.setdefault(key, []).append((tone, " ".join("".join(text).split())))
            self._verdict = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data):
        for part in (self._cell, self._caption, self._style):
            if part is not None:
                part.append(data)
        if self._verdict is not None:
            self._verdict[1].append(data)
        if self._section is not None:
            self.section_text.setdefault(self._section, []).append(data)

    def text_of(self, section: str) -> str:
        return " ".join(" ".join(self.section_text.get(section, [])).split())

    def rows(self, table_id: str) -> list[dict[str, str]]:
        """Body rows of a table as {header: cell} (the last header row names the columns)."""
        table = self.tables[table_id]
        header = table["head"][-1]
        return [dict(zip(header, row, strict=True)) for row in table["body"]]


def _means(rows: pd.DataFrame) -> dict[str, float]:
    return {m: float(rows[m].mean()) for m in ("mse", "mae", "ssim")}


def assert_summary_matches(page: Page, table: pd.DataFrame, config: dict[str, Any]) -> None:
    """Every number of the summary tables equals the means of metrics.csv's ok runs.

    Per dataset: the teacher's row, each student's plain (``none``) row and its best
    distilled row, the best chosen as the lowest mean MSE over seeds, recomputed here
    from the table independently of sdkd.report.
    """
    ok = table[table["status"] == "ok"]
    for dataset in config["datasets"]:
        rows = {(r["model"], r["trained as"]): r for r in page.rows(f"T_summary-{dataset}")}
        mine = ok[ok["dataset"] == dataset]
        teacher = mine[mine["role"] == "teacher"]
        if len(teacher):
            expected = _means(teacher)
            row = rows[(config["models"]["teacher"], "teacher")]
            for metric, column in (("mse", "MSE"), ("mae", "MAE"), ("ssim", "SSIM")):
                assert row[column] == fmt_metric(metric, expected[metric]), (dataset, column)
        for student in mine[mine["role"] == "student"]["model"].unique():
            runs = mine[mine["model"] == student]
            plain = runs[runs["setting"] == "none"]
            if len(plain):
                key = str(plain["bands"].iloc[0])
                _assert_row(rows[(student, f"{key} (plain)")], _means(plain), plain)
            distilled = runs[runs["setting"] != "none"]
            if len(distilled):
                best = str(distilled.groupby("bands")["mse"].mean().idxmin())
                label = next(k for k in rows if k[0] == student and k[1].endswith("(best)"))
                assert label[1].split(" ")[0] == best, (dataset, student, label)
                chosen = distilled[distilled["bands"] == best]
                _assert_row(rows[label], _means(chosen), chosen)


def _assert_row(row: dict[str, str], expected: dict[str, float], runs: pd.DataFrame) -> None:
    assert row["MSE"].split(" ± ")[0] == fmt_metric("mse", expected["mse"]), row
    assert row["MAE"].split(" ± ")[0] == fmt_metric("mae", expected["mae"]), row
    assert row["SSIM"] == fmt_metric("ssim", expected["ssim"]), row
    if len(runs) > 1:
        assert row["MSE"].split(" ± ")[1] == f"{runs['mse'].std(ddof=1):.2g}", row


def chromium(tmp_path: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless chromium with ``args`` (a fresh profile under ``tmp_path``, no network);
    asserts that it succeeded."""
    profile = tmp_path / f"profile-{name}"
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-extensions", f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0", *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def console_problems(stderr: str) -> list[str]:
    """Console lines in chromium's log: the report prints nothing, so each is a problem."""
    # Chromium logs every console message (console.error included) as INFO:CONSOLE
    return [line for line in stderr.splitlines()
            if ":CONSOLE" in line or "Uncaught" in line or "Failed to load" in line]
