#!/usr/bin/env python3
"""Helper of scripts/bench-compare.sh (`make bench-compare`); not meant to be run alone.

Subcommands:
  ids TRUTH ES_URL ALIAS IDS_JSON SEQ_FILE LENGTH SEED
      the seeded orders that Elasticsearch holds (the hot ones), and the id
      sequence every target is asked for (uniform draws, fixed seed)
  warm-gateway PORT KEY IDS_JSON
      fills the gateway's cache through batchGet (100 ids a request)
  dump PORT KEY IDS_JSON WWW_DIR TSV
      fetches each order's gateway JSON once: one file per id for nginx, and
      "id<TAB>json" lines for the bare server
  warm BASE_URL PREFIX IDS_JSON
      GET BASE_URL PREFIX id for every id (fills Varnish)
  measure NAME BASE_URL PREFIX KEY SEQ_FILE OUT_JSON PIDS
      a short warm-up, the fixed rate, then the search for the highest rate
      with p99 under the limit (offered rate doubled per step, then
      bisected); every run is oha
  table RESULTS_JSON...
      the comparison table
Settings come from the environment (see scripts/bench-compare.sh).
"""
import http.client
import json
import os
import random
import resource
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def env(name, default):
    return type(default)(os.environ.get(name, default))


def log(msg):
    print(f"[bench-compare] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- data


def cmd_ids(truth, es_url, alias, ids_json, seq_file, length, seed):
    ids = [json.loads(line)["order_id"] for line in open(truth) if line.strip()]
    hot = []
    for i in range(0, len(ids), 1000):
        body = json.dumps({"ids": ids[i:i + 1000]}).encode()
        req = urllib.request.Request(f"{es_url}/{alias}/_mget?_source=false", data=body,
                                     headers={"content-type": "application/json"})
        docs = json.load(urllib.request.urlopen(req, timeout=60))["docs"]
        hot += [d["_id"] for d in docs if d.get("found")]
    if not hot:
        sys.exit(f"no seeded order is in Elasticsearch alias {alias}")
    json.dump(hot, open(ids_json, "w"))
    rng = random.Random(int(seed))
    with open(seq_file, "w") as f:
        for _ in range(int(length)):
            f.write(rng.choice(hot) + "\n")
    log(f"{len(hot)} of {len(ids)} seeded orders are in Elasticsearch (the others are older than the hot "
        f"window: ClickHouse only); {length} requests drawn uniformly from them (seed {seed})")


def cmd_warm_gateway(port, key, ids_json):
    ids = json.load(open(ids_json))
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
    found = 0
    for i in range(0, len(ids), 100):
        conn.request("POST", "/v1/orders:batchGet", body=json.dumps({"ids": ids[i:i + 100]}),
                     headers={"content-type": "application/json", "x-api-key": key})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            sys.exit(f"batchGet: status {resp.status}: {body[:300]!r}")
        found += len(json.loads(body)["orders"])
    if found != len(ids):
        sys.exit(f"batchGet found {found} of {len(ids)} orders")


def cmd_dump(port, key, ids_json, www, tsv):
    ids = json.load(open(ids_json))
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
    os.makedirs(os.path.join(www, "v1", "orders"), exist_ok=True)
    misses = 0
    with open(tsv, "wb") as out:
        for oid in ids:
            conn.request("GET", f"/v1/orders/{oid}", headers={"x-api-key": key})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                sys.exit(f"GET /v1/orders/{oid}: status {resp.status}: {body[:300]!r}")
            if resp.getheader("x-cache") != "HIT":
                misses += 1
            if b"\t" in body or b"\n" in body or "/" in oid:
                sys.exit(f"order {oid}: id or body unfit for the data files")
            with open(os.path.join(www, "v1", "orders", oid), "wb") as f:
                f.write(body)
            out.write(oid.encode() + b"\t" + body + b"\n")
    if misses:
        sys.exit(f"{misses} of {len(ids)} lookups were not cache hits after warming")


def cmd_warm(base, prefix, ids_json):
    ids = json.load(open(ids_json))
    host, port = base.split("//", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    for oid in ids:
        conn.request("GET", prefix + oid)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            sys.exit(f"GET {base}{prefix}{oid}: status {resp.status}: {body[:300]!r}")


# ---------------------------------------------------------------- measurement


def descendants(pids):
    """pids and every process below them (nginx's and varnishd's workers)."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
                parent[int(d)] = int(stat[stat.rindex(")") + 2:].split()[1])
            except (OSError, ValueError):
                pass
    out, todo = set(), list(pids)
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo += [c for c, pp in parent.items() if pp == p]
    return out


def cpu_seconds(pids):
    total = 0
    for p in pids:
        try:
            stat = open(f"/proc/{p}/stat").read()
            f = stat[stat.rindex(")") + 2:].split()
            total += int(f[11]) + int(f[12])  # utime, stime
        except (OSError, ValueError):
            pass
    return total / CLK_TCK


def machine_busy():
    """CPU seconds spent busy by every core (idle and iowait excluded)."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / CLK_TCK


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def generator(cmd):
    cpus = os.environ.get("GENERATOR_CPUS", "")
    return (["taskset", "-c", cpus] if cpus else []) + cmd


def oha(urls_file, key, rate, seconds, pids):
    """One oha run at `rate` requests/s (open model, latency counted from when
    each request was due); returns achieved rate, errors, percentiles and the
    cores the server and oha used meanwhile."""
    # Identity encoding for every target: oha asks for gzip by default, which
    # Elasticsearch (and so Varnish) would honour and the others would not.
    cmd = generator([os.environ.get("OHA_BIN", "oha"), "--no-tui", "--output-format", "json", "-z", f"{seconds}s",
                     "-q", str(rate), "--latency-correction", "-c", str(env("CONNECTIONS", 100)),
                     "-H", "accept-encoding: identity", "--urls-from-file", urls_file]
                    + (["-H", f"x-api-key: {key}"] if key else []))
    procs = descendants(pids)
    s0, g0, m0, t0 = cpu_seconds(procs), children_cpu(), machine_busy(), time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    wall = time.monotonic() - t0
    s1, g1, m1 = cpu_seconds(descendants(pids) | procs), children_cpu(), machine_busy()
    if done.returncode != 0:
        sys.exit(f"oha failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    r = json.loads(done.stdout)
    lat = r["latencyPercentiles"]
    codes = r.get("statusCodeDistribution", {})
    # Requests still in flight at the deadline are cut off by oha: not errors.
    errors = sum(n for e, n in r.get("errorDistribution", {}).items() if "deadline" not in e)
    errors += sum(n for c, n in codes.items() if not c.startswith("2"))
    ok = sum(n for c, n in codes.items() if c.startswith("2"))
    return {"rate": rate, "rps": ok / r["summary"]["total"], "requests": ok, "errors": errors,
            "p50_ms": (lat["p50"] or 0) * 1000, "p99_ms": (lat["p99"] or 0) * 1000,
            "p999_ms": (lat["p99.9"] or 0) * 1000,
            "bytes_per_response": r["summary"].get("sizePerRequest") or 0,
            "server_cores": (s1 - s0) / wall, "generator_cores": (g1 - g0) / wall,
            # Everything else: other processes, and kernel time no process is charged with.
            "other_cores": max(0.0, ((m1 - m0) - (s1 - s0) - (g1 - g0)) / wall)}


def cmd_measure(name, base, prefix, key, seq, out_json, pids):
    pids = [int(p) for p in pids.split(",") if p]
    limit = env("P99_LIMIT_MS", 5.0)
    step_s = env("STEP_SECONDS", 4)
    fixed_rate = env("FIXED_RATE", 5000)
    urls = out_json + ".urls"
    with open(urls, "w") as f:
        for oid in open(seq):
            if oid.strip():
                f.write(f"{base}{prefix}{oid.strip()}\n")

    def passes(r):
        return not r["errors"] and r["p99_ms"] < limit and r["rps"] >= 0.95 * r["rate"]

    def step(rate):
        r = oha(urls, key, rate, step_s, pids)
        r["pass"] = passes(r)
        steps.append(r)
        log(f"{name:13} {rate:7,}/s offered: {r['rps']:8,.0f}/s  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:8.2f} ms  "
            f"errors {r['errors']}  cores: server {r['server_cores']:.2f}, oha {r['generator_cores']:.2f}, "
            f"other {r['other_cores']:.2f}  {'ok' if r['pass'] else 'missed'}")
        return r["pass"]

    warm = oha(urls, key, env("WARMUP_RATE", 2000), env("WARMUP_SECONDS", 2), pids)
    if warm["errors"] or not warm["requests"]:
        sys.exit(f"{name}: the warm-up had {warm['errors']} errors in {warm['requests']} requests")
    # (b) The fixed rate first, before the search has pushed the server past
    # saturation (queues, a JVM's garbage).
    fixed = oha(urls, key, fixed_rate, env("FIXED_SECONDS", 10), pids)
    log(f"{name:13} fixed {fixed_rate:,}/s: achieved {fixed['rps']:,.0f}/s  p50 {fixed['p50_ms']:.2f} ms  "
        f"p99 {fixed['p99_ms']:.2f} ms  p99.9 {fixed['p999_ms']:.2f} ms  errors {fixed['errors']}  "
        f"cores: server {fixed['server_cores']:.2f}, oha {fixed['generator_cores']:.2f}, other {fixed['other_cores']:.2f}")
    # (a) Double the offered rate until a step misses, then bisect between the
    # last rate that held and the first that did not.
    steps = []
    good, bad, rate = 0, None, env("START_RATE", 5000)
    while rate <= env("MAX_RATE", 400000):
        if not step(rate):
            bad = rate
            break
        good, rate = rate, rate * 2
    for _ in range(env("BISECT_STEPS", 3) if bad else 0):
        mid = (good + bad) // 2
        if step(mid):
            good = mid
        else:
            bad = mid
    best = next((r for r in steps if r["rate"] == good and r["pass"]), None)
    failed = next((r for r in steps if r["rate"] == bad), None)
    json.dump({"name": name, "url": base + prefix + "{id}", "steps": steps, "best": best, "failed": failed,
               "fixed": fixed}, open(out_json, "w"), indent=1)


# ---------------------------------------------------------------- table


def limited_by(r):
    """What ran out at the first offered rate the target missed: a heuristic
    from the CPU each side used there (printed with the table)."""
    f = r["failed"]
    if not f:
        return "not reached"
    server_cpus = env("SERVER_CPU_COUNT", 1)
    if os.environ.get("GENERATOR_CPUS"):
        if f["server_cores"] >= 0.8 * server_cpus:
            return "server CPU"
        if f["generator_cores"] >= 0.8:
            return "generator CPU"
    elif f["server_cores"] + f["generator_cores"] >= 0.8 * (os.cpu_count() or 1):
        return "CPU (server+oha)"
    if f["other_cores"] >= 0.5:
        return "other load"
    return "no CPU full"


def cmd_table(*files):
    res = [json.load(open(f)) for f in files]
    gw = res[0]
    limit = env("P99_LIMIT_MS", 5.0)

    def ratio(a, b):
        return f"{a / b:.2f}" if a is not None and b else "-"

    def best(r, k):
        return r["best"][k] if r["best"] else None

    def num(v, fmt, unit=""):
        return "-" if v is None else format(v, fmt) + unit

    rows = [["target", f"max req/s p99<{limit:g}ms", "/gw", "p99 there", "server cores", "oha cores", "other cores",
             "CPU us/req",
             "limited by", "bytes/resp", f"p50 @{env('FIXED_RATE', 5000):,}/s", "p99", "p99.9", "p50/gw", "p99/gw",
             "p99.9/gw", "errors"]]
    for r in res:
        f, g = r["fixed"], gw["fixed"]
        rps = best(r, "rps")
        rows.append([
            r["name"],
            num(rps, ",.0f") if r["best"] else f"< {r['failed']['rate']:,}",
            ratio(rps, best(gw, "rps")),
            num(best(r, "p99_ms"), ".2f", " ms"),
            num(best(r, "server_cores"), ".2f"),
            num(best(r, "generator_cores"), ".2f"),
            num(best(r, "other_cores"), ".2f"),
            num(best(r, "server_cores") / rps * 1e6 if rps else None, ".1f"),
            limited_by(r),
            num(best(r, "bytes_per_response") or f["bytes_per_response"], ",.0f"),
            f"{f['p50_ms']:.2f} ms", f"{f['p99_ms']:.2f} ms", f"{f['p999_ms']:.2f} ms",
            ratio(f["p50_ms"], g["p50_ms"]), ratio(f["p99_ms"], g["p99_ms"]), ratio(f["p999_ms"], g["p999_ms"]),
            str(f["errors"]),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) if i in (0, 8) else c.rjust(w)
                                for i, (c, w) in enumerate(zip(row, widths))) + " |")
        if n == 0:
            print("|" + "|".join(("-" * (w + 2)) if i in (0, 8) else ("-" * (w + 1) + ":") for i, w in enumerate(widths)) + "|")


if __name__ == "__main__":
    commands = {"ids": cmd_ids, "warm-gateway": cmd_warm_gateway, "dump": cmd_dump, "warm": cmd_warm,
                "measure": cmd_measure, "table": cmd_table}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])
