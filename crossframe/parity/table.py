"""Render parity records as an aligned table."""


def _number(value, spec):
    """``value`` formatted, or '-' where nothing was measured (None or NaN)."""
    return "-" if value is None or value != value else format(value, spec)


def format_table(records):
    header = ("network", "mode", "pair", "rel error", "f64 floor", "tolerance", "verdict", "worst tensor")
    rows = [header]
    for r in records:
        rows.append((r.network, r.mode, r.pair, _number(r.rel, ".2e"), _number(r.floor, ".2e"), f"{r.tolerance:.0e}",
                     r.verdict or ("ok" if r.passed else "FAIL"), r.worst))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    failed = sum(not r.passed for r in records)
    limited = [r for r in records if r.verdict == "ok*"]
    lines.append("")
    for r in limited:
        lines.append(f"ok*: {r.network} {r.mode} {r.pair} is over the float32 band but float32-limited: the pair "
                     f"agrees in float64 (rel {_number(r.rel64, '.1e')}, band {_number(r.tolerance64, '.1e')}) and a "
                     f"framework's own float32 error is {_number(r.own, '.1e')}")
    anchored = [r for r in records if getattr(r, "rel32", float("nan")) == r.rel32]
    for network in dict.fromkeys(r.network for r in anchored):
        pairs = [r for r in anchored if r.network == network]
        lines.append(f"{network}: float32 anchor (each pair in float32, band {pairs[0].tolerance32:.0e}): "
                     + ", ".join(f"{r.pair} {_number(r.rel32, '.1e')}" for r in pairs))
    for r in records:
        if not r.passed and r.rel64 == r.rel64 and not r.rel64 <= r.tolerance64:
            lines.append(f"FAIL: {r.network} {r.mode} {r.pair}: the pair differs in float64 (rel "
                         f"{_number(r.rel64, '.1e')}, band {_number(r.tolerance64, '.1e')}): the frameworks compute "
                         "different functions")
    for r in records:
        rel32 = getattr(r, "rel32", float("nan"))
        if not r.passed and rel32 == rel32:  # a low-precision pair judged with its float32 anchor
            why = (f"the pair differs in float32 (rel {_number(rel32, '.1e')}, band {r.tolerance32:.0e}): the "
                   f"frameworks compute different functions" if not rel32 <= r.tolerance32 else
                   f"over the {r.tolerance:.0e} band (in float32 the pair agrees, rel {_number(rel32, '.1e')})")
            lines.append(f"FAIL: {r.network} {r.mode} {r.pair}: {why}")
    lines.append(f"{len(records) - failed} comparisons within tolerance, {failed} out of tolerance" if records
                 else "no comparisons made")
    return "\n".join(lines)
