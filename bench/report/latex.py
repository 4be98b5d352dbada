"""The report's tables in LaTeX: the same interval in math mode (``$m \\pm h$``, or ``$m^{+a}_{-b}$`` where
clipping made it asymmetric), the report's non-ASCII text in LaTeX that compiles with the default fonts."""
from __future__ import annotations

import math
import re
import unicodedata

import pandas as pd

from bench.report.aggregate import Column
from bench.report.stats import LEVEL

# --- LaTeX ----------------------------------------------------------------------------------------

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}
# what the report's text holds beyond ASCII, in LaTeX that compiles with the default fonts
_LATEX_UNICODE = {"∞": r"$\infty$", "ε": r"$\epsilon$", "Δ": r"$\Delta$", "±": r"$\pm$", "×": r"$\times$",
                  "·": r"$\cdot$", "≈": r"$\approx$", "−": "-", "–": "--", "—": "---", "⚠": r"$^\dagger$"}
LATEX_FLAG = r"$^\dagger$"
_NUMBER = re.compile(r"^(–|[-+]?\d[\d.]*)$")   # a plain number or no value: right-aligned


def latex_escape(text) -> str:
    """Text as LaTeX source: specials escaped, known symbols in math mode, anything else non-ASCII
    reduced to ASCII (accents dropped) or written as its Unicode name in brackets."""
    out = []
    for ch in str(text):
        if ch in _LATEX_SPECIAL:
            out.append(_LATEX_SPECIAL[ch])
        elif ch in _LATEX_UNICODE:
            out.append(_LATEX_UNICODE[ch])
        elif ord(ch) < 128:
            out.append(ch)
        else:
            plain = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
            out.append(latex_escape(plain) if plain else f"[{unicodedata.name(ch, f'U+{ord(ch):04X}')}]")
    return "".join(out)


def latex_cell(mean: float, low: float, high: float, scale: float = 100.0, digits: int = 1) -> str:
    r"""``$m \pm h$`` for a symmetric interval; ``$m^{+a}_{-b}$`` where clipping to the range made it
    asymmetric; ``$m$`` without one (n = 1); ``--`` for no value."""
    if math.isnan(mean):
        return "--"
    f = f".{digits}f"
    text = f"{scale * mean:{f}}"
    if math.isnan(low):
        return f"${text}$"
    up, down = f"{scale * (high - mean):{f}}", f"{scale * (mean - low):{f}}"
    return f"${text} \\pm {up}$" if up == down else f"${text}^{{+{up}}}_{{-{down}}}$"


def latex_table(shown: pd.DataFrame, numeric: pd.DataFrame, columns: list[Column]) -> str:
    """A booktabs tabular of the display table, each interval cell in math mode from the numeric
    table (the same clipped interval as the Markdown), pure ASCII."""
    by_label = {c.label: c for c in columns}
    cells, align = {}, ""
    for name in shown.columns:
        col = by_label.get(name)
        if col is None:
            cells[latex_escape(name)] = [latex_escape(v) for v in shown[name]]
            align += "r" if all(_NUMBER.match(str(v)) for v in shown[name]) else "l"
        else:
            cells[latex_escape(name)] = [latex_cell(m, lo, hi, col.scale, col.digits) for m, lo, hi in
                                         zip(numeric[f"{name} mean"], numeric[f"{name} low"], numeric[f"{name} high"])]
            align += "r"
    head = [f"% Mean over n seeds $\\pm$ the half-width of its {100 * LEVEL:g} percent Student-t interval; "
            "where clipping to the range made it asymmetric, mean^{+up}_{-down}.",
            "% Needs \\usepackage{booktabs}."]
    if any(LATEX_FLAG in v for v in cells.get("Method", [])):
        head.append(f"% {LATEX_FLAG}: a sanity check fired on this row (see the report's Sanity checks).")
    return "\n".join(head) + "\n" + pd.DataFrame(cells).to_latex(index=False, escape=False, column_format=align)
