"""How figures are written in every table gendistill prints or renders (reports, benchmark, export, bench)."""

from __future__ import annotations


def pct(x, std=None, sign: bool = True) -> str:
    """0.6435 -> '64.3%' ('64.3' without `sign`, for tables headed in %); with `std`, '64.3 ± 1.2'; None -> '-'."""
    if x is None:
        return "-"
    if std is not None:
        return f"{100 * x:.1f} ± {100 * std:.1f}"
    return f"{100 * x:.1f}" + ("%" if sign else "")


def ms(x, unit: bool = True) -> str:
    """Milliseconds: '0.047 ms' below 1 ms, '15.6 ms' above; None -> '-'."""
    if x is None:
        return "-"
    return (f"{x:.3f}" if x < 1 else f"{x:.1f}") + (" ms" if unit else "")


def size(n) -> str:
    """Bytes: '950 kB', '3.7 MB'; None -> '-'."""
    if n is None:
        return "-"
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def table(rows: list[tuple], header: bool = True) -> str:
    """Plain-text columns, left-aligned, a rule under the header row."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    if header:
        lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
