// Analytics under load: the same KPI query over and over (answered from the
// answer cache after the first), and KPI queries that are each new (every
// one goes to ClickHouse). Constant arrival rates, open model.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 analytics.js
import http from 'k6/http';
import { check } from 'k6';

const BASE = __ENV.BASE_URL || 'http://127.0.0.1:8080';
// The key loadtest/run.sh configured (unlimited tier: the scenario measures the gateway, not its limits).
const AUTH = { Authorization: `Bearer ${__ENV.API_KEY || ''}` };
const DURATION = __ENV.DURATION || '20s';
const DAY = 86400000;
// Every VU runs this init code: round the clock so they all ask the same "cached" query.
const now = Math.floor(Date.now() / 3600000) * 3600000;
const iso = (ms) => new Date(ms).toISOString();

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'max'],
  scenarios: {
    cached: { executor: 'constant-arrival-rate', rate: parseInt(__ENV.CACHED_RATE || '500', 10), timeUnit: '1s',
              duration: DURATION, preAllocatedVUs: 20, maxVUs: 200, exec: 'cached', tags: { kind: 'cached' } },
    uncached: { executor: 'constant-arrival-rate', rate: parseInt(__ENV.UNCACHED_RATE || '5', 10), timeUnit: '1s',
                duration: DURATION, preAllocatedVUs: 10, maxVUs: 100, exec: 'uncached', tags: { kind: 'uncached' } },
  },
  thresholds: {
    'http_req_duration{kind:cached}': ['p(99)<5'],
    'http_req_duration{kind:uncached}': ['p(99)<1000'],
    'http_req_failed': ['rate<0.001'],
    'http_reqs{kind:cached}': [],
    'http_reqs{kind:uncached}': [],
  },
};

const fixedFrom = iso(now - 3 * 365 * DAY - DAY);
const fixedTo = iso(now + DAY);

export function cached() {
  const r = http.get(`${BASE}/v1/analytics/kpis?from=${fixedFrom}&to=${fixedTo}`, { headers: AUTH, tags: { name: 'kpis' } });
  check(r, { 'status 200': (x) => x.status === 200 });
}

export function uncached() {
  // A window ending at a random millisecond is a query nobody asked before.
  const to = now - Math.floor(Math.random() * 30 * DAY);
  const r = http.get(`${BASE}/v1/analytics/kpis?from=${iso(to - 365 * DAY)}&to=${iso(to)}`, { headers: AUTH, tags: { name: 'kpis' } });
  check(r, { 'status 200': (x) => x.status === 200 });
}

export function handleSummary(data) {
  const rows = ['cached', 'uncached'].map((k) => {
    const d = (data.metrics[`http_req_duration{kind:${k}}`] || { values: {} }).values;
    const n = (data.metrics[`http_reqs{kind:${k}}`] || { values: {} }).values;
    return `| analytics-${k} | ${(n.count || 0)} | ${(d['p(50)'] || 0).toFixed(2)} | ${(d['p(99)'] || 0).toFixed(2)} | ${(d.max || 0).toFixed(2)} |`;
  });
  const failed = data.metrics.http_req_failed ? data.metrics.http_req_failed.values.rate : 0;
  return { stdout: `\n| scenario | requests | p50 ms | p99 ms | max ms |\n| --- | --- | --- | --- | --- |\n${rows.join('\n')}\nerrors: ${(failed * 100).toFixed(3)}%\n` };
}
