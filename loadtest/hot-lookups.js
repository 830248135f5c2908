// Hot order lookups at a constant arrival rate (open model: latency is not
// hidden by coordinated omission), ids drawn with a Zipf-like skew so a few
// orders are very popular and most are rarely asked for, as in a CRM.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e IDS=ids.json -e RATE=10000 -e DURATION=30s hot-lookups.js
//
// IDS: a JSON array of order ids (loadtest/run.sh writes it from a seed run).
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';

const BASE = __ENV.BASE_URL || 'http://127.0.0.1:8080';
// The key loadtest/run.sh configured (unlimited tier: the scenario measures the gateway, not its limits).
const AUTH = { Authorization: `Bearer ${__ENV.API_KEY || ''}` };
const RATE = parseInt(__ENV.RATE || '10000', 10);
const DURATION = __ENV.DURATION || '30s';
const ids = new SharedArray('ids', () => JSON.parse(open(__ENV.IDS || 'ids.json')));

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'p(99.9)', 'max'],
  scenarios: {
    // Touch every popular id once at a modest rate: the measured phase is about hits.
    warmup: { executor: 'constant-arrival-rate', rate: 2000, timeUnit: '1s', duration: '5s',
              preAllocatedVUs: 50, maxVUs: 200, exec: 'lookup', tags: { phase: 'warmup' } },
    hot: { executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s', duration: DURATION, startTime: '6s',
           preAllocatedVUs: 200, maxVUs: 1000, exec: 'lookup', tags: { phase: 'hot' } },
  },
  thresholds: {
    // The targets of the read path: p99 under 1 ms of cache hits, no errors.
    'http_req_duration{phase:hot}': ['p(99)<1'],
    'http_req_failed{phase:hot}': ['rate<0.001'],
    'http_reqs{phase:hot}': [],
    'dropped_iterations': [],
  },
};

// P(rank k) ~ 1/k over the id list.
function zipfIndex(n) {
  return Math.min(n - 1, Math.floor(Math.pow(n + 1, Math.random())) - 1);
}

export function lookup() {
  const id = ids[zipfIndex(ids.length)];
  const r = http.get(`${BASE}/v1/orders/${id}`, { headers: AUTH, tags: { name: 'GET /v1/orders/{order_id}' } });
  check(r, { 'status 200': (x) => x.status === 200 });
}

function seconds(d) {
  const m = /^(\d+)(ms|s|m)$/.exec(d);
  if (!m) return 1;
  return parseInt(m[1], 10) * ({ ms: 0.001, s: 1, m: 60 })[m[2]];
}

export function handleSummary(data) {
  const m = (name) => (data.metrics[name] ? data.metrics[name].values : {});
  const d = m('http_req_duration{phase:hot}');
  const reqs = m('http_reqs{phase:hot}');
  const failed = m('http_req_failed{phase:hot}');
  const dropped = m('dropped_iterations');
  const row = {
    scenario: 'hot-lookups',
    target_rps: RATE,
    // k6's rate divides by the whole run (warm-up included): use the phase's own length.
    achieved_rps: ((reqs.count || 0) / seconds(DURATION)).toFixed(0),
    p50_ms: (d['p(50)'] || 0).toFixed(3),
    p99_ms: (d['p(99)'] || 0).toFixed(3),
    p999_ms: (d['p(99.9)'] || 0).toFixed(3),
    errors: ((failed.rate || 0) * 100).toFixed(3) + '%',
    dropped: dropped.count || 0,
  };
  const line = Object.values(row).join(' | ');
  const text = `\n| ${Object.keys(row).join(' | ')} |\n| ${Object.keys(row).map(() => '---').join(' | ')} |\n| ${line} |\n`;
  return { stdout: text, 'loadtest/last-hot-lookups.json': JSON.stringify(row) };
}
