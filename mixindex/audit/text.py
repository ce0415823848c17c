"""Plain-text tables for the audit commands' output."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["grid"]


def grid(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], left: int = 1) -> list[str]:
    """Aligned rows: the first ``left`` columns to the left, the rest (numbers) to the right."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = []
    for r in (header, *rows):
        cells = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines
