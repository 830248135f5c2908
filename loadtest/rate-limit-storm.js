// Rate-limit storm from many clients: STORM_KEYS distinct API keys, all in a
// small tier, send lookups well above their tier's rate (constant arrival
// rate, open model), while a separate well-behaved client looks orders up
// within its own limits. The gateway should refuse the excess with 429 at
// once, never answer 5xx, and keep serving the well-behaved client.
//
//   k6 run -e BASE_URL=... -e STORM_KEYS=storm-keys.json -e GOOD_KEY=... -e IDS=ids.json \
//          -e STORM_RATE=4000 -e STORM_TIER_RATE=5 -e GOOD_RATE=50 -e DURATION=30s rate-limit-storm.js
//
// STORM_KEYS: a JSON array of API keys (run.sh configures them in tier "storm",
// STORM_TIER_RATE lookups per second with a burst of twice that).
import http from 'k6/http';
import { check } from 'k6';
import { Rate } from 'k6/metrics';
import { SharedArray } from 'k6/data';
import { BASE, TREND_STATS, row, seconds, summarize, zipfIndex } from './lib.js';

const DURATION = __ENV.DURATION || '30s';
const STORM_RATE = parseInt(__ENV.STORM_RATE || '4000', 10);
const GOOD_RATE = parseInt(__ENV.GOOD_RATE || '50', 10);
const TIER_RATE = parseInt(__ENV.STORM_TIER_RATE || '5', 10);
const keys = new SharedArray('storm keys', () => JSON.parse(open(__ENV.STORM_KEYS || 'storm-keys.json')));
// The share of the storm a perfect limiter refuses: each key may spend its
// burst plus its rate over the run, and is offered STORM_RATE / keys per second.
const offered = (STORM_RATE / keys.length) * seconds(DURATION);
const REFUSABLE = Math.max(0, 1 - (2 * TIER_RATE + TIER_RATE * seconds(DURATION)) / offered);
const ids = new SharedArray('ids', () => JSON.parse(open(__ENV.IDS || 'ids.json')));
const GOOD = { Authorization: `Bearer ${__ENV.GOOD_KEY || ''}` };
// A refusal is the expected answer to the storm, not a failed request.
const STORM_EXPECTED = http.expectedStatuses(200, 429);

const serverErrors = new Rate('server_errors');
const limited = new Rate('storm_limited');

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: TREND_STATS,
  scenarios: {
    storm: { executor: 'constant-arrival-rate', rate: STORM_RATE, timeUnit: '1s', duration: DURATION,
             preAllocatedVUs: 100, maxVUs: 1000, exec: 'storm' },
    good: { executor: 'constant-arrival-rate', rate: GOOD_RATE, timeUnit: '1s', duration: DURATION,
            preAllocatedVUs: 5, maxVUs: 50, exec: 'good' },
  },
  thresholds: {
    // Refusing is cheap: the bucket is checked before any handler work.
    'http_req_duration{scenario:storm,status:429}': ['p(99)<10'],
    // Never a 5xx, to anyone (no shedding, no backend trouble from a storm of refusals).
    server_errors: ['rate==0'],
    // The limits engage: at least half of what a perfect limiter would refuse
    // is refused (less arrives when k6 falls behind its schedule).
    storm_limited: [`rate>=${(REFUSABLE / 2).toFixed(3)}`],
    'http_req_failed{scenario:storm}': ['rate<0.001'],
    // The well-behaved client does not notice.
    'http_req_failed{scenario:good}': ['rate<0.001'],
    'http_req_duration{scenario:good}': ['p(99)<20'],
    'http_req_duration{scenario:storm}': [],
    'http_reqs{scenario:storm}': [],
    'http_reqs{scenario:storm,status:429}': [],
    'http_req_failed{scenario:storm,status:429}': [],
    'http_reqs{scenario:good}': [],
    'dropped_iterations{scenario:storm}': [],
    'dropped_iterations{scenario:good}': [],
  },
};

function lookup(headers, extra) {
  const r = http.get(`${BASE}/v1/orders/${ids[zipfIndex(ids.length)]}`,
    Object.assign({ headers, tags: { name: 'GET /v1/orders/{order_id}' } }, extra));
  serverErrors.add(r.status >= 500);
  return r;
}

export function storm() {
  const key = keys[Math.floor(Math.random() * keys.length)];
  const r = lookup({ Authorization: `Bearer ${key}` }, { responseCallback: STORM_EXPECTED });
  limited.add(r.status === 429);
  check(r, { 'status 200 or 429': (x) => x.status === 200 || x.status === 429 });
}

export function good() {
  check(lookup(GOOD), { 'status 200': (x) => x.status === 200 });
}

export function handleSummary(data) {
  const s = seconds(DURATION);
  const share = data.metrics.storm_limited ? data.metrics.storm_limited.values.rate : 0;
  const five = data.metrics.server_errors ? data.metrics.server_errors.values.passes : 0;
  const all = row(data, { scenario: `rate-limit storm (${keys.length} keys)`, tag: 'scenario:storm', targetRps: STORM_RATE,
    durationS: s, match: ['scenario:storm}', 'storm_limited', 'server_errors'],
    note: `${(share * 100).toFixed(1)} % answered 429 (a perfect limiter: ${(REFUSABLE * 100).toFixed(1)} %); ` +
      `${five} answers 5xx (storm and good client)` });
  const refused = row(data, { scenario: 'rate-limit storm: the 429 answers', tag: 'scenario:storm,status:429', durationS: s });
  refused.dropped = null;
  const good = row(data, { scenario: 'rate-limit storm: well-behaved client', tag: 'scenario:good', targetRps: GOOD_RATE, durationS: s });
  return summarize('6-rate-limit-storm', data, [all, refused, good]);
}
