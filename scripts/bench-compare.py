#!/usr/bin/env python3
"""Helper of scripts/bench-compare.sh (`make bench-compare`); not meant to be run alone.

Subcommands:
  ids ES_URL ALIAS IDS_JSON SEQ_FILE LENGTH SEED
      the seeded orders that Elasticsearch holds (the hot ones), and the id
      sequence every target is asked for (uniform draws, fixed seed)
  warm-gateway PORT KEY IDS_JSON
      fills the gateway's cache through batchGet (100 ids a request)
  dump PORT KEY IDS_JSON WWW_DIR TSV
      fetches each order's gateway JSON once: one file per id for nginx, and
      "id<TAB>json" lines for the bare server
  warm BASE_URL PREFIX IDS_JSON
      GET BASE_URL PREFIX id for every id (fills Varnish)
  run TARGETS_TSV SEQ_FILE TMP_DIR OUT_JSON
      every target (lines: name, base URL, path prefix, key, server pids,
      re-pin 0/1; tab separated): a warm-up, the fixed rate, then the search
      for the highest rate with p99 under the limit (offered rate doubled per
      step, then bisected), then a capacity run (wrk, closed model), targets
      taking turns
  table RESULTS_JSON
      the comparison table
Settings come from the environment (see scripts/bench-compare.sh).
"""
import http.client
import json
import os
import random
import resource
import signal
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


def es(url, body=None, method=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None, method=method,
                                 headers={"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=60))


def cmd_ids(es_url, alias, ids_json, seq_file, length, seed):
    # Every order the alias holds (seeding keeps only orders of the hot window
    # there; the older ones are in ClickHouse alone), sorted for a stable draw.
    page = es(f"{es_url}/{alias}/_search?scroll=1m", {"size": 5000, "_source": False, "sort": ["_doc"]})
    hot = []
    while page["hits"]["hits"]:
        hot += [h["_id"] for h in page["hits"]["hits"]]
        page = es(f"{es_url}/_search/scroll", {"scroll": "1m", "scroll_id": page["_scroll_id"]})
    es(f"{es_url}/_search/scroll", {"scroll_id": page["_scroll_id"]}, method="DELETE")
    if not hot:
        sys.exit(f"no order in Elasticsearch alias {alias}")
    hot.sort()
    json.dump(hot, open(ids_json, "w"))
    rng = random.Random(int(seed))
    with open(seq_file, "w") as f:
        for _ in range(int(length)):
            f.write(rng.choice(hot) + "\n")
    log(f"{len(hot)} orders in Elasticsearch alias {alias} (the seeded orders of the hot window); "
        f"{length} requests drawn uniformly from them (seed {seed})")


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


def measured(cmd, pids, seconds):
    """Runs the load generator `cmd`; returns its output and the cores used
    meanwhile by the server (pids and their children), by the generator, and
    by everything else (other processes, and kernel time charged to none)."""
    procs = descendants(pids)
    s0, g0, m0, t0 = cpu_seconds(procs), children_cpu(), machine_busy(), time.monotonic()
    done = subprocess.run(generator(cmd), capture_output=True, text=True, timeout=seconds + 60)
    wall = time.monotonic() - t0
    s1, g1, m1 = cpu_seconds(descendants(pids) | procs), children_cpu(), machine_busy()
    if done.returncode != 0:
        sys.exit(f"{os.path.basename(cmd[0])} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    server, gen = (s1 - s0) / wall, (g1 - g0) / wall
    return done.stdout, {"server_cores": server, "generator_cores": gen,
                         "other_cores": max(0.0, (m1 - m0) / wall - server - gen)}


def oha(urls_file, key, rate, seconds, pids):
    """One oha run at `rate` requests/s (open model, latency counted from when
    each request was due): achieved rate, errors, percentiles, cores."""
    # Identity encoding for every target: oha asks for gzip by default, which
    # Elasticsearch (and so Varnish) would honour and the others would not.
    cmd = [os.environ.get("OHA_BIN", "oha"), "--no-tui", "--output-format", "json", "-z", f"{seconds}s",
           "-q", str(rate), "--latency-correction", "-c", str(env("CONNECTIONS", 100)),
           "-H", "accept-encoding: identity", "--urls-from-file", urls_file] + (["-H", f"x-api-key: {key}"] if key else [])
    out, cores = measured(cmd, pids, seconds)
    r = json.loads(out)
    lat = r["latencyPercentiles"]
    codes = r.get("statusCodeDistribution", {})
    # Requests still in flight at the deadline are cut off by oha: not errors.
    errors = sum(n for e, n in r.get("errorDistribution", {}).items() if "deadline" not in e)
    errors += sum(n for c, n in codes.items() if not c.startswith("2"))
    ok = sum(n for c, n in codes.items() if c.startswith("2"))
    return {"rate": rate, "rps": ok / r["summary"]["total"], "requests": ok, "errors": errors,
            "p50_ms": (lat["p50"] or 0) * 1000, "p99_ms": (lat["p99"] or 0) * 1000,
            "p999_ms": (lat["p99.9"] or 0) * 1000,
            "bytes_per_response": r["summary"].get("sizePerRequest") or 0, **cores}


def wrk(base, prefix, key, seq, conns, seconds, pids):
    """One wrk run (closed model, one thread): the most the target answers
    when asked as fast as it answers, whatever the latency."""
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "2s",
           "-s", os.path.join(HERE, "bench-compare.lua"), base, "--", seq, prefix, key]
    out, cores = measured(cmd, pids, seconds)
    r = json.loads(out.strip().splitlines()[-1])
    return {"connections": conns, "rps": r["requests"] / (r["duration_us"] / 1e6), "errors": r["errors"],
            "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000, "p999_ms": r["p999_us"] / 1000, **cores}


class Target:
    def __init__(self, line, seq, tmp):
        self.name, self.base, self.prefix, self.key, pids, self.repin = line.rstrip("\n").split("\t")
        self.pids = [int(p) for p in pids.split(",") if p]
        self.urls = os.path.join(tmp, f"{self.name}.urls")
        with open(self.urls, "w") as f:
            for oid in open(seq):
                if oid.strip():
                    f.write(f"{self.base}{self.prefix}{oid.strip()}\n")
        self.seq, self.steps, self.fixed, self.capacity = seq, [], None, None
        self.good, self.bad, self.next, self.bisect_left = 0, None, env("START_RATE", 5000), env("BISECT_STEPS", 3)

    def pinned(self, measure):
        """A server that this script did not start (Elasticsearch) is moved onto
        the server CPUs for one measurement only (REPIN=1)."""
        cpus = os.environ.get("SERVER_CPUS", "")
        if not (self.repin == "1" and cpus and self.pids):
            return measure()
        pid = str(self.pids[0])
        before = subprocess.run(["taskset", "-c", "-p", pid], capture_output=True, text=True,
                                check=True).stdout.split(": ")[1].strip()
        subprocess.run(["taskset", "-a", "-c", "-p", cpus, pid], capture_output=True, check=True)
        try:
            return measure()
        finally:
            subprocess.run(["taskset", "-a", "-c", "-p", before, pid], capture_output=True, check=True)

    def run(self, rate, seconds):
        return self.pinned(lambda: oha(self.urls, self.key, rate, seconds, self.pids))

    def run_capacity(self):
        c = self.capacity = self.pinned(lambda: wrk(self.base, self.prefix, self.key, self.seq,
                                                    env("CAPACITY_CONNECTIONS", 64), env("STEP_SECONDS", 4), self.pids))
        log(f"{self.name:13} capacity (wrk, {c['connections']} connections): {c['rps']:,.0f}/s  p50 {c['p50_ms']:.2f} ms  "
            f"p99 {c['p99_ms']:.2f} ms  errors {c['errors']}  cores: server {c['server_cores']:.2f}, "
            f"wrk {c['generator_cores']:.2f}, other {c['other_cores']:.2f}")

    def search_step(self, limit):
        """One step of (a): double the offered rate until a step misses, then
        bisect between the last rate held and the first missed."""
        rate = self.next
        r = self.run(rate, env("STEP_SECONDS", 4))
        r["pass"] = not r["errors"] and r["p99_ms"] < limit and r["rps"] >= 0.95 * rate
        self.steps.append(r)
        log(f"{self.name:13} {rate:7,}/s offered: {r['rps']:8,.0f}/s  p50 {r['p50_ms']:7.2f} ms  "
            f"p99 {r['p99_ms']:8.2f} ms  errors {r['errors']}  cores: server {r['server_cores']:.2f}, "
            f"oha {r['generator_cores']:.2f}, other {r['other_cores']:.2f}  {'ok' if r['pass'] else 'missed'}")
        if r["pass"]:
            self.good = rate
        else:
            self.bad = rate
        if self.bad is None:
            self.next = rate * 2 if rate * 2 <= env("MAX_RATE", 400000) else None
        elif self.bisect_left > 0 and self.bad - self.good > 1:
            self.bisect_left -= 1
            self.next = (self.good + self.bad) // 2
        else:
            self.next = None

    def result(self):
        best = next((r for r in self.steps if r["rate"] == self.good and r["pass"]), None)
        failed = next((r for r in self.steps if r["rate"] == self.bad), None)
        return {"name": self.name, "url": self.base + self.prefix + "{id}", "steps": self.steps, "best": best,
                "failed": failed, "fixed": self.fixed, "capacity": self.capacity}


def cmd_run(targets_tsv, seq, tmp, out_json):
    """Every target in turn within each phase and each round of the search, so
    that load from outside this run (other processes) falls on all of them
    alike instead of on whichever target happened to be measured then."""
    targets = [Target(line, seq, tmp) for line in open(targets_tsv) if line.strip()]
    limit = env("P99_LIMIT_MS", 5.0)
    fixed_rate = env("FIXED_RATE", 5000)
    for t in targets:
        warm = t.run(env("WARMUP_RATE", 2000), env("WARMUP_SECONDS", 2))
        if warm["errors"] or not warm["requests"]:
            sys.exit(f"{t.name}: the warm-up had {warm['errors']} errors in {warm['requests']} requests")
    # (b) The fixed rate first, before the search has pushed any server past
    # saturation (queues, a JVM's garbage).
    for t in targets:
        f = t.fixed = t.run(fixed_rate, env("FIXED_SECONDS", 10))
        log(f"{t.name:13} fixed {fixed_rate:,}/s: achieved {f['rps']:,.0f}/s  p50 {f['p50_ms']:.2f} ms  "
            f"p99 {f['p99_ms']:.2f} ms  p99.9 {f['p999_ms']:.2f} ms  errors {f['errors']}  "
            f"cores: server {f['server_cores']:.2f}, oha {f['generator_cores']:.2f}, other {f['other_cores']:.2f}")
    # (a) Rounds: one step for every target still searching, the order rotated.
    n = 0
    while any(t.next for t in targets):
        for t in targets[n % len(targets):] + targets[:n % len(targets)]:
            if t.next:
                t.search_step(limit)
        n += 1
    # (c) Capacity: wrk as fast as each target answers.
    for t in targets:
        t.run_capacity()
    json.dump([t.result() for t in targets], open(out_json, "w"), indent=1)


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


def cmd_table(results_json):
    res = json.load(open(results_json))
    gw = res[0]
    limit = env("P99_LIMIT_MS", 5.0)

    def ratio(a, b):
        return f"{a / b:.2f}" if a is not None and b else "-"

    def num(v, fmt, unit=""):
        return "-" if v is None else format(v, fmt) + unit

    def best(r, k):
        return r["best"][k] if r["best"] else None

    rows = [["target", f"max req/s p99<{limit:g}ms", "/gw", "p99 there", "server cores", "oha cores", "other cores",
             "limited by", "wrk req/s", "/gw", "server cores", "wrk cores", "CPU us/req",
             f"p50 @{env('FIXED_RATE', 5000):,}/s", "p99", "p99.9", "p50/gw", "p99/gw", "p99.9/gw", "errors"]]
    for r in res:
        f, g, c = r["fixed"], gw["fixed"], r["capacity"]
        rps = best(r, "rps")
        rows.append([
            r["name"],
            num(rps, ",.0f") if r["best"] else f"< {r['failed']['rate']:,}",
            ratio(rps, best(gw, "rps")),
            num(best(r, "p99_ms"), ".2f", " ms"),
            num(best(r, "server_cores"), ".2f"),
            num(best(r, "generator_cores"), ".2f"),
            num(best(r, "other_cores"), ".2f"),
            limited_by(r),
            num(c["rps"], ",.0f"),
            ratio(c["rps"], gw["capacity"]["rps"]),
            num(c["server_cores"], ".2f"),
            num(c["generator_cores"], ".2f"),
            num(c["server_cores"] / c["rps"] * 1e6 if c["rps"] else None, ".1f"),
            f"{f['p50_ms']:.2f} ms", f"{f['p99_ms']:.2f} ms", f"{f['p999_ms']:.2f} ms",
            ratio(f["p50_ms"], g["p50_ms"]), ratio(f["p99_ms"], g["p99_ms"]), ratio(f["p999_ms"], g["p999_ms"]),
            str(f["errors"] + c["errors"]),
        ])
    left = (0, 7)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) if i in left else c.rjust(w)
                                for i, (c, w) in enumerate(zip(row, widths))) + " |")
        if n == 0:
            print("|" + "|".join(("-" * (w + 2)) if i in left else ("-" * (w + 1) + ":") for i, w in enumerate(widths)) + "|")
    sizes = ", ".join(f"{r['name']} {r['fixed']['bytes_per_response']:,}" for r in res)
    print(f"\nmean response body (bytes): {sizes}")


if __name__ == "__main__":
    # SIGTERM (the script's trap) unwinds like an exception: subprocess.run kills
    # the load generator it waits for, and Elasticsearch gets its CPUs back.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    commands = {"ids": cmd_ids, "warm-gateway": cmd_warm_gateway, "dump": cmd_dump, "warm": cmd_warm,
                "run": cmd_run, "table": cmd_table}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])
