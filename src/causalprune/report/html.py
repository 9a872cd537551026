"""Small HTML builders for the report: escaped text, tables, embedded images, collapsible blocks.

The page must open anywhere without a network: every image is a ``data:image/png;base64`` URI,
the CSS is inline, and there is no JavaScript. All text from run folders is escaped.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = ["esc", "table", "img", "img_file", "details", "section", "page", "fmt"]

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1150px;
     padding:0 1rem;color:#1d2330;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{border-bottom:1px solid #d5dae3;padding-bottom:.2rem;margin-top:2rem}
.meta{color:#5a6375;font-size:.9rem} nav a{margin-right:1rem}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.88rem}
th,td{border:1px solid #d5dae3;padding:.25rem .55rem;text-align:right;vertical-align:top}
th{background:#eef1f6} td.l,th.l{text-align:left}
tr:nth-child(even) td{background:#f8f9fb} .tw{overflow-x:auto;max-width:100%}
figure{margin:1rem 0} figcaption{color:#5a6375;font-size:.85rem;margin-top:.3rem}
img{max-width:100%;height:auto;border:1px solid #e3e6ec}
details{margin:.4rem 0;border:1px solid #d5dae3;border-radius:4px;padding:.3rem .6rem}
summary{cursor:pointer;font-weight:600} .note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5rem .8rem}
.findings{background:#eef6ee;border-left:4px solid #3c9a3c;padding:.5rem 1rem} b.nd{color:#8a3b00}
"""


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def fmt(x: Any, digits: int = 2) -> str:
    """Numbers for tables: fixed decimals for floats, thousands separators for ints, '-' for None."""
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:.{digits}e}" if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e7) else f"{x:,.{digits}f}"
    return str(x)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, left: int = 1, cls: str = "",
          raw: bool = False) -> str:
    """An HTML table; the first ``left`` columns are left-aligned (text), the rest right (numbers).
    Cells are escaped unless ``raw`` (for cells that already hold HTML)."""
    def cell(tag: str, i: int, v: Any) -> str:
        align = ' class="l"' if i < left else ""
        return f"<{tag}{align}>{v if raw else esc(v)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    # The wrapper scrolls a wide table on its own instead of widening the page.
    return (f'<div class="tw"><table class="{esc(cls)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{body}</tbody></table></div>')


def img(png: bytes, alt: str, caption: str = "") -> str:
    """A figure with the PNG embedded as a data URI."""
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt)}">{cap}</figure>'


def img_file(path: str | Path, alt: str, caption: str = "") -> str:
    return img(Path(path).read_bytes(), alt, caption)


def details(summary: str, body: str, *, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{esc(summary)}</summary>{body}</details>"


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def page(title: str, meta: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole document: title, a table of contents (plain anchors, no script), the sections."""
    nav = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in sections)
    body = "".join(section(a, t, b) for a, t, b in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{esc(title)}</h1><p class=\"meta\">{meta}</p><nav>{nav}</nav>{body}</body></html>\n")
