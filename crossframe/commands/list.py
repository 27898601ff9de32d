"""crossframe list: the registered variants, with family, parameters, MACs and input size."""

import json
import sys

from . import CommandError

NAME = "list"
HELP = "list the registered variants (family, parameters, MACs, input size)"


def add_arguments(parser):
    parser.add_argument("--family", action="append", metavar="FAMILY",
                        help="only the variants of this family (repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON object: {\"variants\": [...]}")


def rows(families=None):
    import archspec

    out = []
    for name in archspec.list_variants():
        spec = archspec.load(name)
        if families and spec.family not in families:
            continue
        out.append({"name": name, "family": spec.family, "params": spec.params, "macs": spec.macs,
                    "input_shape": list(spec.input_shape), "num_classes": spec.num_classes})
    return out


def format_rows(items):
    header = ("name", "family", "params", "MACs", "input")
    body = [(r["name"], r["family"], f"{r['params']:,}", f"{r['macs']:,}", "x".join(map(str, r["input_shape"])))
            for r in items]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    right = (False, False, True, True, False)
    return "\n".join("  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(line, widths, right)).rstrip()
                     for line in [header, *body])


def run(args):
    items = rows(args.family)
    if not items:
        import archspec

        known = sorted({archspec.load(n).family for n in archspec.list_variants()})
        raise CommandError(f"--family {', '.join(args.family)}: no such family (have {', '.join(known)})")
    if args.json:
        json.dump({"variants": items}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(format_rows(items))
    return 0
