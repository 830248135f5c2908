// Hot order lookups at a constant arrival rate (open model: latency is not
// hidden by coordinated omission), ids drawn with a Zipf-like skew over the
// seeded ids so a few orders are very popular and most are rarely asked for,
// as in a CRM. The cache holds every order (run.sh warms it): this measures hits.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e API_KEY=... -e IDS=ids.json -e RATE=10000 -e DURATION=30s hot-lookups.js
//
// IDS: a JSON array of order ids (loadtest/run.sh writes it from the seed's truth file).
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
import { AUTH, BASE, TREND_STATS, row, seconds, summarize, zipfIndex } from './lib.js';

const RATE = parseInt(__ENV.RATE || '10000', 10);
const DURATION = __ENV.DURATION || '30s';
const ids = new SharedArray('ids', () => JSON.parse(open(__ENV.IDS || 'ids.json')));

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: TREND_STATS,
  scenarios: {
    // Gets k6's VUs and connections going at a modest rate; not measured.
    warmup: { executor: 'constant-arrival-rate', rate: Math.min(2000, RATE), timeUnit: '1s', duration: '5s',
              preAllocatedVUs: 50, maxVUs: 200, exec: 'lookup' },
    hot: { executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s', duration: DURATION, startTime: '6s',
           preAllocatedVUs: 200, maxVUs: 1000, exec: 'lookup' },
  },
  thresholds: {
    // The read path's target: p99 under 1 ms for cache hits, no errors.
    'http_req_duration{scenario:hot}': ['p(99)<1'],
    'http_req_failed{scenario:hot}': ['rate<0.001'],
    'http_reqs{scenario:hot}': [],
    'dropped_iterations{scenario:hot}': [],
  },
};

export function lookup() {
  const id = ids[zipfIndex(ids.length)];
  const r = http.get(`${BASE}/v1/orders/${id}`, { headers: AUTH, tags: { name: 'GET /v1/orders/{order_id}' } });
  check(r, { 'status 200': (x) => x.status === 200 });
}

export function handleSummary(data) {
  return summarize('1-hot-lookups', data, [
    row(data, { scenario: 'hot lookups (zipf, cache hits)', tag: 'scenario:hot', targetRps: RATE, durationS: seconds(DURATION) }),
  ]);
}
