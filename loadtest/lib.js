// Shared by the k6 scenarios: the id skew, durations, and the per-scenario
// summary rows that loadtest/summary.py gathers into one table.
//
// Every scenario reports through `summarize`: one JSON file per script in
// SUMMARY_DIR (loadtest/run.sh sets it to its work directory), holding rows of
//   scenario, target_rps, achieved_rps, p50/p99/p99.9 in ms, errors, dropped,
//   failed (thresholds that were missed), note
// and the same rows on stdout, so a script run on its own prints them too.

// p(99.9) must be listed here for k6 to compute it.
export const TREND_STATS = ['avg', 'min', 'med', 'p(50)', 'p(90)', 'p(99)', 'p(99.9)', 'max', 'count'];

// The run's key (every scope, tier "unlimited"): the scenarios measure the
// gateway's work, authentication included, not its rate limits.
export const BASE = __ENV.BASE_URL || 'http://127.0.0.1:8080';
export const AUTH = { Authorization: `Bearer ${__ENV.API_KEY || ''}` };

// Index in [0, n) with P(k) ~ 1/(k+1): a few orders are asked for very often,
// most rarely, as in a CRM (inverse-CDF sampling of a continuous 1/x law).
export function zipfIndex(n) {
  return Math.min(n - 1, Math.floor(Math.pow(n + 1, Math.random())) - 1);
}

// "30s", "500ms", "2m" in seconds.
export function seconds(d) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(String(d));
  if (!m) throw new Error(`cannot read the duration ${d}: write it like 30s, 500ms or 2m`);
  return parseFloat(m[1]) * { ms: 0.001, s: 1, m: 60 }[m[2]];
}

function values(data, name) {
  return data.metrics[name] ? data.metrics[name].values : {};
}

// Thresholds missed, as "metric: expression", over metrics whose name
// contains one of `match` (every metric when `match` is empty).
function missed(data, match) {
  const out = [];
  for (const [name, m] of Object.entries(data.metrics)) {
    if (!m.thresholds) continue;
    if (match.length && !match.some((s) => name.includes(s))) continue;
    for (const [expr, t] of Object.entries(m.thresholds)) {
      if (!t.ok) out.push(`${name}: ${expr}`);
    }
  }
  return out;
}

// One row from the submetrics tagged `tag` (for example "scenario:hot"):
// http_req_duration{tag}, http_reqs{tag}, http_req_failed{tag} and
// dropped_iterations{tag} need a threshold in the script (an empty list is
// enough) for k6 to keep them. `durationS` is the scenario's own length:
// k6's rate divides by the whole test, set-up and other scenarios included.
export function row(data, { scenario, tag, targetRps, durationS, match, note }) {
  const d = values(data, `http_req_duration{${tag}}`);
  const n = values(data, `http_reqs{${tag}}`);
  const f = values(data, `http_req_failed{${tag}}`);
  const dropped = values(data, `dropped_iterations{${tag}}`);
  return {
    scenario,
    target_rps: targetRps,
    achieved_rps: durationS ? Math.round((n.count || 0) / durationS) : null,
    requests: n.count || 0,
    p50_ms: d['p(50)'],
    p99_ms: d['p(99)'],
    p999_ms: d['p(99.9)'],
    // http_req_failed is a Rate: its "passes" are the failed requests.
    errors: f.passes || 0,
    dropped: dropped.count || 0,
    failed: missed(data, match || [tag]),
    note: note || '',
  };
}

function ms(v) {
  return v === undefined || v === null ? '-' : v.toFixed(v < 10 ? 2 : 1);
}

// handleSummary's answer: the rows on stdout and as `<name>.json` in SUMMARY_DIR.
// Thresholds that no row claims are added to the first row, so none is lost.
export function summarize(name, data, rows) {
  const claimed = new Set(rows.flatMap((r) => r.failed));
  const rest = missed(data, []).filter((t) => !claimed.has(t));
  if (rows.length) rows[0].failed = rows[0].failed.concat(rest);
  const lines = rows.map(
    (r) =>
      `[${r.scenario}] ${r.achieved_rps ?? '-'} req/s (target ${r.target_rps ?? '-'}), p50 ${ms(r.p50_ms)} ms, ` +
      `p99 ${ms(r.p99_ms)} ms, p99.9 ${ms(r.p999_ms)} ms, ${r.errors} errors` +
      (r.dropped === null ? '' : `, ${r.dropped} dropped`) +
      (r.note ? `; ${r.note}` : '') +
      (r.failed.length ? `\n  THRESHOLD MISSED: ${r.failed.join('; ')}` : ''),
  );
  const out = { stdout: `${lines.join('\n')}\n` };
  if (__ENV.SUMMARY_DIR) out[`${__ENV.SUMMARY_DIR}/${name}.json`] = JSON.stringify(rows, null, 1);
  return out;
}
