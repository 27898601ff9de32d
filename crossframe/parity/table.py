"""Render parity records as an aligned table."""


def format_table(records):
    header = ("network", "mode", "pair", "rel error", "f64 floor", "tolerance", "verdict", "worst tensor")
    rows = [header]
    for r in records:
        rows.append((r.network, r.mode, r.pair, f"{r.rel:.2e}", f"{r.floor:.2e}", f"{r.tolerance:.0e}",
                     "ok" if r.passed else "FAIL", r.worst))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    failed = sum(not r.passed for r in records)
    lines.append("")
    lines.append(f"{len(records) - failed} comparisons within tolerance, {failed} out of tolerance" if records
                 else "no comparisons made")
    return "\n".join(lines)
