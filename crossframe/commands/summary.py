"""crossframe summary: one network's layers, output shapes, parameters and MACs, from its spec alone."""

import json
import sys
from pathlib import Path

from . import CommandError

NAME = "summary"
HELP = "layer table of a variant: output shapes, parameters and MACs, from the spec alone (no framework)"


def add_arguments(parser):
    parser.add_argument("name", metavar="NAME", help="a variant name (see `crossframe list`) or a family JSON file")
    parser.add_argument("--variant", metavar="V", help="the variant to use when NAME is a family file with several")
    parser.add_argument("--input-size", type=int, metavar="N", help="square input side (default: the spec's)")
    parser.add_argument("--max-depth", type=int, metavar="D",
                        help="0: top-level layers only; 1: and the sub-layers of blocks (default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (archspec.analytics.summary)")


def run(args):
    from archspec import analytics, load

    is_file = Path(args.name).suffix == ".json" or Path(args.name).is_file()
    if args.variant and not is_file:
        raise CommandError(f"--variant {args.variant}: only for a family file; {args.name!r} is a variant name")
    overrides = {} if args.input_size is None else {"input_size": args.input_size}
    summary = analytics.summary(load(args.name, variant=args.variant, **overrides))
    if args.max_depth is not None:
        summary["layers"] = [r for r in summary["layers"] if r["depth"] <= args.max_depth]
    if args.json:
        json.dump(summary, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(analytics.format_table(summary))
    return 0
