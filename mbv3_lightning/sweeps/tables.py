"""A report table written three ways: Markdown, CSV and LaTeX (booktabs), one recipe header.

A cell holds a plain value (``int``, ``float``, ``str`` or ``None``) or a ``(mean, std)``
pair over seeds. The Markdown and LaTeX forms round to each column's digits and mark the best
value of a ranked column in bold; the CSV keeps the numbers (integers as integers, floats
rounded to 6 significant digits so float32 noise such as 0.8999999761581421 reads 0.9) with
``_std`` columns for the pairs, and the recipe as ``#`` comment lines
(``pandas.read_csv(path, comment="#")``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Value = int | float | str | tuple[float, float] | None
NA = "n/a"


def mean_std_text(stat: tuple[float, float], digits: int, scale: float = 1.0) -> str:
    """``0.8012 ± 0.0319``: a mean and std over seeds as every table and legend prints it
    (the mean alone when the std is 0, e.g. one seed)."""
    mean, std = stat[0] / scale, stat[1] / scale
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std > 0 else f"{mean:.{digits}f}"


@dataclass(frozen=True)
class Column:
    """One column: its title, how many decimals to show, and whether high or low is best."""

    title: str
    digits: int = 2
    best: str | None = None  # "max" | "min" | None (not ranked)
    scale: float = 1.0  # values are divided by this for display (e.g. 1e6 for "M")


@dataclass
class Table:
    """A titled table with a recipe header and notes, in Markdown, CSV and LaTeX."""

    name: str  # file stem, e.g. "table3_complexity"
    title: str
    columns: list[Column]
    rows: list[list[Value]] = field(default_factory=list)
    recipe: list[str] = field(default_factory=list)  # "key: value" lines
    notes: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ values
    @staticmethod
    def _mean(value: Value) -> float | None:
        if isinstance(value, tuple):
            return value[0]
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value) if math.isfinite(value) else None
        return None

    def best_rows(self, col: int) -> set[int]:
        """Rows holding the best value of column ``col`` (ties all count; none if unranked)."""
        rule = self.columns[col].best
        if rule is None:
            return set()
        values = {
            i: m for i, row in enumerate(self.rows) if (m := self._mean(row[col])) is not None
        }
        if len(values) < 2:
            return set()
        target = max(values.values()) if rule == "max" else min(values.values())
        digits, scale = self.columns[col].digits, self.columns[col].scale
        # equal as displayed: 0.99996 and 1.0 both show 1.0000 and are both best
        return {
            i
            for i, v in values.items()
            if round(v / scale, digits) == round(target / scale, digits)
        }

    def _text(self, value: Value, column: Column) -> str:
        if value is None:
            return NA
        if isinstance(value, str):
            return value
        if isinstance(value, tuple):
            return mean_std_text(value, column.digits, column.scale)
        if isinstance(value, int) and column.scale == 1.0:
            return f"{value:,}"
        return f"{value / column.scale:.{column.digits}f}"

    # ------------------------------------------------------------------ writers
    def to_markdown(self) -> str:
        lines = [f"**{self.title}**", ""]
        lines += [f"> {line}  " for line in self.recipe]
        if self.recipe:
            lines.append("")
        header = [c.title for c in self.columns]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        best = {col: self.best_rows(col) for col in range(len(self.columns))}
        for i, row in enumerate(self.rows):
            cells = []
            for col, (value, column) in enumerate(zip(row, self.columns, strict=True)):
                text = self._text(value, column).replace("|", "\\|")
                cells.append(f"**{text}**" if i in best[col] else text)
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", *(f"{note}" for note in self.notes)] if self.notes else []
        return "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        best = {col: self.best_rows(col) for col in range(len(self.columns))}
        align = "l" + "r" * (len(self.columns) - 1)
        lines = [f"% {line}" for line in self.recipe]
        lines += [
            "% needs \\usepackage{booktabs}",
            "\\begin{table}[t]",
            "\\centering",
            f"\\caption{{{_tex(self.title)}}}",
            f"\\label{{tab:{self.name}}}",
            f"\\begin{{tabular}}{{{align}}}",
            "\\toprule",
            " & ".join(_tex(c.title) for c in self.columns) + " \\\\",
            "\\midrule",
        ]
        for i, row in enumerate(self.rows):
            cells = []
            for col, (value, column) in enumerate(zip(row, self.columns, strict=True)):
                text = _tex(self._text(value, column))
                cells.append(f"\\textbf{{{text}}}" if i in best[col] else text)
            lines.append(" & ".join(cells) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}"]
        if self.notes:
            lines.append("\\par\\smallskip\\footnotesize " + " ".join(_tex(n) for n in self.notes))
        lines.append("\\end{table}")
        return "\n".join(lines) + "\n"

    def write_csv(self, path: Path) -> Path:
        header: list[str] = []
        paired = [any(isinstance(r[c], tuple) for r in self.rows) for c in range(len(self.columns))]
        for column, has_std in zip(self.columns, paired, strict=True):
            header.append(column.title)
            if has_std:
                header.append(f"{column.title} std")
        with path.open("w", newline="") as f:
            for line in self.recipe:
                f.write(f"# {line}\n")
            writer = csv.writer(f)
            writer.writerow(header)
            for row in self.rows:
                out: list[Any] = []
                for value, column, has_std in zip(row, self.columns, paired, strict=True):
                    mean, std = value if isinstance(value, tuple) else (value, None)
                    out.append(csv_number(mean, column.scale))
                    if has_std:
                        out.append(csv_number(std, column.scale))
                writer.writerow(out)
        return path

    def write(self, out_dir: Path) -> dict[str, Path]:
        """``<name>.md``, ``<name>.csv`` and ``<name>.tex`` in ``out_dir``."""
        md, tex = out_dir / f"{self.name}.md", out_dir / f"{self.name}.tex"
        md.write_text(self.to_markdown())
        tex.write_text(self.to_latex())
        return {"md": md, "csv": self.write_csv(out_dir / f"{self.name}.csv"), "tex": tex}


def csv_number(value: Value, scale: float) -> Any:
    """Integers stay integers; floats lose float32 noise (6 significant digits)."""
    if value is None:
        return ""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int) and scale == 1.0:
        return value
    return float(f"{float(value) / scale:.6g}")  # type: ignore[arg-type]


_TEX_ESCAPES = {
    "\\": "\\textbackslash{}",
    "&": "\\&",
    "%": "\\%",
    "$": "\\$",
    "#": "\\#",
    "_": "\\_",
    "{": "\\{",
    "}": "\\}",
    "~": "\\textasciitilde{}",
    "^": "\\textasciicircum{}",
    "±": "$\\pm$",
    "×": "$\\times$",
}


def _tex(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)


def recipe_lines(
    command: str, fixed: Sequence[str], seeds: Sequence[Any], versions: dict[str, str], device: str
) -> list[str]:
    """The header every table carries: how to get these numbers again."""
    return [
        f"command: {command}",
        f"fixed overrides: {' '.join(fixed) if fixed else 'none'}",
        f"seeds: {', '.join(str(s) for s in seeds) if seeds else NA}",
        "versions: " + (", ".join(f"{k} {v}" for k, v in versions.items()) or NA),
        f"device: {device}",
    ]
