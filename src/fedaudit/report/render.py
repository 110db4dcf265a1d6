"""Write a :class:`~fedaudit.report.tables.Table` as CSV (its numbers), Markdown, LaTeX (booktabs)
and a self-contained HTML page (the paper's layout; the HTML is what the Snakemake report shows).
"""

from __future__ import annotations

import html
from pathlib import Path

from fedaudit.atomic import write_csv, write_text
from fedaudit.report.tables import Block, Table

FORMATS = ("csv", "md", "tex", "html")

_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "✓": r"\checkmark", "✗": r"$\times$", "–": "--", "γ": r"$\gamma$",
    "∞": r"$\infty$", "≈": r"$\approx$", "<": r"$<$", ">": r"$>$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def _md_cell(text: str, bold: bool) -> str:
    text = str(text).replace("|", r"\|")
    return f"**{text}**" if bold and text else text


def to_markdown(table: Table) -> str:
    out = [f"**{table.title}**", ""]
    for block in table.blocks:
        if block.title:
            out += [f"*{block.title}*", ""]
        cols = list(block.frame.columns)
        out.append("| " + " | ".join(cols) + " |")
        out.append("|" + "|".join("---" for _ in cols) + "|")
        for i in range(len(block.frame)):
            out.append("| " + " | ".join(_md_cell(block.frame.iat[i, j], block.is_bold(i, j))
                                         for j in range(len(cols))) + " |")
        out.append("")
    out += [f"{n}" for n in table.notes]
    return "\n".join(out) + "\n"


def to_latex(table: Table) -> str:
    """One ``tabular`` (booktabs); a titled block starts with a spanning row, as in Table 3."""
    ncols = max(len(b.frame.columns) for b in table.blocks)
    out = [r"\begin{table}", r"\centering", rf"\caption{{{latex_escape(table.title)}}}",
           rf"\label{{tab:fedaudit-{table.name}}}",
           r"\begin{tabular}{" + "l" * ncols + "}", r"\toprule"]
    for k, block in enumerate(table.blocks):
        if k:
            out.append(r"\midrule")
        if block.title:
            out.append(rf"\multicolumn{{{ncols}}}{{l}}{{\textit{{{latex_escape(block.title)}}}}}"
                       r" \\")
        out.append(" & ".join(latex_escape(c) for c in block.frame.columns) + r" \\")
        out.append(r"\midrule")
        for i in range(len(block.frame)):
            cells = []
            for j in range(len(block.frame.columns)):
                cell = latex_escape(block.frame.iat[i, j])
                cells.append(rf"\textbf{{{cell}}}" if block.is_bold(i, j) and cell else cell)
            out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    out += [r"\par\smallskip\footnotesize " + latex_escape(n) for n in table.notes]
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


_CSS = ("body{font-family:sans-serif;font-size:13px;margin:8px}"
        "table{border-collapse:collapse;margin-bottom:10px}"
        "th,td{border-bottom:1px solid #ccc;padding:3px 9px;text-align:left;white-space:nowrap}"
        "th{border-bottom:2px solid #444}caption{text-align:left;font-style:italic;"
        "padding:6px 0}p.note{color:#444;max-width:60em}")


def _html_block(block: Block) -> str:
    rows = ["<table>"]
    if block.title:
        rows.append(f"<caption>{html.escape(block.title)}</caption>")
    rows.append("<tr>" + "".join(f"<th>{html.escape(str(c))}</th>"
                                 for c in block.frame.columns) + "</tr>")
    for i in range(len(block.frame)):
        cells = []
        for j in range(len(block.frame.columns)):
            text = html.escape(str(block.frame.iat[i, j]))
            cells.append(f"<td><b>{text}</b></td>" if block.is_bold(i, j) and text
                         else f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def to_html(table: Table) -> str:
    """A standalone page (inline CSS, no external resources) for the offline report."""
    body = "\n".join(_html_block(b) for b in table.blocks)
    notes = "\n".join(f"<p class='note'>{html.escape(n)}</p>" for n in table.notes)
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
            f"<title>{html.escape(table.title)}</title><style>{_CSS}</style></head>"
            f"<body><h3>{html.escape(table.title)}</h3>\n{body}\n{notes}\n</body></html>\n")


def write_table(table: Table, paths: dict[str, str | Path]) -> None:
    """Write the formats named in ``paths`` (keys from :data:`FORMATS`)."""
    unknown = set(paths) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown table format(s) {sorted(unknown)}; known: {FORMATS}")
    writers = {"md": to_markdown, "tex": to_latex, "html": to_html}
    for fmt, path in paths.items():
        # atomic and verified (fedaudit.atomic): a failed write publishes nothing
        if fmt == "csv":
            write_csv(table.data, path, index=False)
        else:
            write_text(writers[fmt](table), path)
