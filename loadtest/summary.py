#!/usr/bin/env python3
"""One table over every load-test scenario (loadtest/run.sh runs it last).

Usage: summary.py WORK_DIR

Reads WORK_DIR/summary/*.json (rows written by each k6 script's handleSummary
and by benches/freshness.rs) and WORK_DIR/summary/status (one "name exit-code"
line per scenario run). Prints a Markdown table, the notes, the thresholds that
were missed and the runs that failed; exits 1 when there is any of those.
"""
import glob
import json
import os
import sys


def ms(v):
    if v is None:
        return "-"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def num(v):
    return "-" if v is None else f"{v:,}"


def main(work):
    rows = []
    for path in sorted(glob.glob(os.path.join(work, "summary", "*.json"))):
        with open(path) as f:
            rows.extend(json.load(f))
    status = []
    status_path = os.path.join(work, "summary", "status")
    if os.path.exists(status_path):
        with open(status_path) as f:
            status = [line.split() for line in f if line.strip()]

    head = ["scenario", "target req/s", "achieved req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors", "dropped", "thresholds"]
    table = [head, ["---"] * len(head)]
    missed, notes = [], []
    for r in rows:
        failed = r.get("failed") or []
        missed += [f"{r['scenario']}: {t}" for t in failed]
        if r.get("note"):
            notes.append(f"{r['scenario']}: {r['note']}")
        table.append([
            r["scenario"],
            num(r.get("target_rps")), num(r.get("achieved_rps")),
            ms(r.get("p50_ms")), ms(r.get("p99_ms")), ms(r.get("p999_ms")),
            num(r.get("errors")), num(r.get("dropped")),
            "MISSED" if failed else "ok",
        ])
    print()
    print("\n".join("| " + " | ".join(str(c) for c in line) + " |" for line in table))
    if notes:
        print()
        print("\n".join(f"- {n}" for n in notes))
    broken = [f"{name} exited with {code}" for name, code in status if code != "0"]
    if missed:
        print("\nThresholds missed:")
        print("\n".join(f"- {m}" for m in missed))
    if broken:
        print("\nRuns that did not pass:")
        print("\n".join(f"- {b}" for b in broken))
    return 1 if missed or broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
