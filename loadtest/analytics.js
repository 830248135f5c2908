// Analytics under load: the same KPI query over and over (answered from the
// answer cache after the first), and KPI queries that are each new (every
// one goes to ClickHouse). Constant arrival rates, open model.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e API_KEY=... -e CACHED_RATE=500 -e UNCACHED_RATE=5 analytics.js
import http from 'k6/http';
import { check } from 'k6';
import { AUTH, BASE, TREND_STATS, row, seconds, summarize } from './lib.js';

const DURATION = __ENV.DURATION || '20s';
const CACHED_RATE = parseInt(__ENV.CACHED_RATE || '500', 10);
const UNCACHED_RATE = parseInt(__ENV.UNCACHED_RATE || '5', 10);
const DAY = 86400000;
// Every VU runs this init code: round the clock so they all ask the same "cached" query.
const now = Math.floor(Date.now() / 3600000) * 3600000;
const iso = (ms) => new Date(ms).toISOString();

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: TREND_STATS,
  scenarios: {
    cached: { executor: 'constant-arrival-rate', rate: CACHED_RATE, timeUnit: '1s',
              duration: DURATION, preAllocatedVUs: 20, maxVUs: 200, exec: 'cached' },
    uncached: { executor: 'constant-arrival-rate', rate: UNCACHED_RATE, timeUnit: '1s',
                duration: DURATION, preAllocatedVUs: 10, maxVUs: 100, exec: 'uncached' },
  },
  thresholds: {
    'http_req_duration{scenario:cached}': ['p(99)<5'],
    'http_req_duration{scenario:uncached}': ['p(99)<1000'],
    'http_req_failed{scenario:cached}': ['rate<0.001'],
    'http_req_failed{scenario:uncached}': ['rate<0.001'],
    'http_reqs{scenario:cached}': [],
    'http_reqs{scenario:uncached}': [],
    'dropped_iterations{scenario:cached}': [],
    'dropped_iterations{scenario:uncached}': [],
  },
};

const fixedFrom = iso(now - 3 * 365 * DAY - DAY);
const fixedTo = iso(now + DAY);

// Computes the "cached" answer once before the measured phase: otherwise the
// requests that arrive while ClickHouse computes it all wait for it, and on a
// short run they alone make the p99.
export function setup() {
  const r = http.get(`${BASE}/v1/analytics/kpis?from=${fixedFrom}&to=${fixedTo}`, { headers: AUTH, tags: { name: 'kpis' } });
  if (r.status !== 200) throw new Error(`GET /v1/analytics/kpis: ${r.status}`);
}

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
  const s = seconds(DURATION);
  return summarize('3-analytics', data, [
    row(data, { scenario: 'analytics KPIs, answer cached', tag: 'scenario:cached', targetRps: CACHED_RATE, durationS: s }),
    row(data, { scenario: 'analytics KPIs, each new (ClickHouse)', tag: 'scenario:uncached', targetRps: UNCACHED_RATE, durationS: s }),
  ]);
}
