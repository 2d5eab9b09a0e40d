"""Results tables and the flat ``metrics.json`` every run writes."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infragym.io import atomic_write_json


@dataclass
class ResultsTable:
    """A side-by-side table: one row per method (model, baselines, oracle), one column per metric."""

    title: str
    columns: list[str]
    rows: dict[str, dict[str, float | str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add_row(self, name: str, values: Mapping[str, float | str]) -> None:
        unknown = set(values) - set(self.columns)
        if unknown:
            raise KeyError(f"table {self.title!r}: unknown columns {sorted(unknown)}")
        self.rows[name] = dict(values)

    def to_text(self, precision: int = 3) -> str:
        def fmt(value: float | str | None) -> str:
            if value is None:
                return "-"
            if isinstance(value, str):
                return value
            if math.isnan(value):
                return "nan"
            return f"{value:.{precision}f}"

        header = ["method", *self.columns]
        body = [[name, *(fmt(row.get(c)) for c in self.columns)] for name, row in self.rows.items()]
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        lines = [self.title, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
        lines += self.notes
        return "\n".join(lines)

    def to_markdown(self, precision: int = 3) -> str:
        def fmt(value: float | str | None) -> str:
            if value is None:
                return "-"
            return value if isinstance(value, str) else f"{value:.{precision}f}"

        lines = ["| method | " + " | ".join(self.columns) + " |"]
        lines.append("|---" * (len(self.columns) + 1) + "|")
        for name, row in self.rows.items():
            lines.append(f"| {name} | " + " | ".join(fmt(row.get(c)) for c in self.columns) + " |")
        return "\n".join(lines)

    def as_records(self) -> tuple[list[str], list[list[float | str | None]]]:
        """Column names and rows, as ``wandb.Table(columns=..., data=...)`` takes them."""
        return ["method", *self.columns], [
            [name, *(row.get(c) for c in self.columns)] for name, row in self.rows.items()
        ]


def validate_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """Check the ``split/name`` naming and finite numeric values; return a plain dict."""
    clean: dict[str, float] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or "/" not in key:
            raise ValueError(f"metric name {key!r} must look like 'split/name'")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"metric {key!r} must be a number, got {type(value).__name__}")
        if not math.isfinite(float(value)):
            raise ValueError(f"metric {key!r} is not finite: {value}")
        clean[key] = float(value)
    return clean


def write_metrics(path: str | os.PathLike[str], metrics: Mapping[str, float]) -> Path:
    return atomic_write_json(path, validate_metrics(metrics))


def render_tables(tables: Sequence[ResultsTable]) -> str:
    return "\n\n".join(t.to_text() for t in tables) + "\n"
