#!/usr/bin/env python3
"""Instructions per request from callgrind dumps (scripts/bench-instructions.sh).

Reads callgrind's output format: within a `fn=` block, a cost line is the
function's own cost, except the line after `calls=`, which is the inclusive
cost of that call. Prints the total divided by the requests served, then the
functions with the most instructions of their own, per request.
"""

import argparse
import collections
import re
import sys

NAME = re.compile(r"\((\d+)\)(?:\s+(.*))?")


def own_costs(paths):
    """Self cost per function name, summed over every dump file given."""
    costs = collections.Counter()
    for path in paths:
        names = {}
        fn = None
        after_call = False
        with open(path, errors="replace") as f:
            for line in f:
                line = line.rstrip("\n")
                if line.startswith(("fn=", "cfn=")):
                    key, rest = line.split("=", 1)
                    m = NAME.match(rest)
                    if m is None:
                        continue
                    if m.group(2):
                        names[m.group(1)] = m.group(2)
                    if key == "fn":
                        fn = names.get(m.group(1), m.group(1))
                    after_call = False
                elif line.startswith("calls="):
                    after_call = True
                elif line and (line[0].isdigit() or line[0] in "+-*"):
                    parts = line.split()
                    if len(parts) < 2:
                        continue
                    if after_call:
                        after_call = False
                    elif fn is not None:
                        costs[fn] += int(parts[1])
    return costs


def short(name):
    """Drops generic arguments, which make Rust names unreadable here."""
    for _ in range(6):
        name = re.sub(r"<[^<>]*>", "", name)
    return name[:120]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--name", required=True)
    p.add_argument("--requests", type=int, required=True)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("dumps", nargs="+")
    a = p.parse_args()
    if a.requests <= 0:
        sys.exit(f"callgrind_summary: --requests must be positive, not {a.requests}")
    costs = own_costs(a.dumps)
    total = sum(costs.values())
    print(f"\n{a.name}: {a.requests} requests, {total / a.requests:,.0f} instructions per request")
    for fn, c in costs.most_common(a.top):
        print(f"  {c / a.requests:8,.0f}  {100 * c / total:5.1f} %  {short(fn)}")


if __name__ == "__main__":
    main()
