// Cold-miss storm on a few ids: each round evicts COLD_IDS orders from the
// cache (DELETE /admin/cache/orders/{id}, scope admin), then sends COLD_FANOUT
// lookups for those few ids at once. Rounds start at a constant arrival rate
// (COLD_ROUNDS per second, open model). Concurrent misses for one id should
// share one backend read (single flight), so the backend sees about one read
// per evicted id per round however many requests arrive: the set-up and the
// tear-down read the gateway's /metrics to count them.
//
//   k6 run -e BASE_URL=... -e API_KEY=... -e IDS=storm-ids.json -e DURATION=10s cold-miss-storm.js
//
// IDS: a JSON array of order ids in the hot window (Elasticsearch); the first
// COLD_IDS are used.
import http from 'k6/http';
import { check } from 'k6';
import { Counter, Gauge } from 'k6/metrics';
import { SharedArray } from 'k6/data';
import { AUTH, BASE, TREND_STATS, row, seconds, summarize } from './lib.js';

const DURATION = __ENV.DURATION || '30s';
const ROUNDS = parseInt(__ENV.COLD_ROUNDS || '5', 10);
const FANOUT = parseInt(__ENV.COLD_FANOUT || '200', 10);
const N = parseInt(__ENV.COLD_IDS || '5', 10);
const ids = new SharedArray('storm ids', () => JSON.parse(open(__ENV.IDS || 'storm-ids.json')).slice(0, N));

const backendReads = new Counter('cold_backend_reads');
const coalesced = new Counter('cold_coalesced_waits');
const misses = new Counter('cold_cache_misses');
const evictions = new Counter('cold_evictions');
const readsPerEviction = new Gauge('cold_backend_reads_per_eviction');

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: TREND_STATS,
  // One round's lookups leave together: as many parallel requests as the fan-out.
  batch: FANOUT,
  batchPerHost: FANOUT,
  scenarios: {
    // The same rounds without evictions: opens k6's connections so the
    // measured rounds do not pay for them. Not measured.
    warmup: { executor: 'constant-arrival-rate', rate: ROUNDS, timeUnit: '1s', duration: '2s',
              preAllocatedVUs: 4, maxVUs: 20, exec: 'round', env: { EVICT: '0' } },
    cold: { executor: 'constant-arrival-rate', rate: ROUNDS, timeUnit: '1s', duration: DURATION, startTime: '2s',
            preAllocatedVUs: 4, maxVUs: 20, exec: 'round', env: { EVICT: '1' } },
  },
  thresholds: {
    // A miss costs one Elasticsearch round trip plus waiting behind the others of its herd.
    'http_req_duration{scenario:cold,kind:lookup}': ['p(99)<100'],
    'http_req_failed{scenario:cold}': ['rate<0.001'],
    'http_reqs{scenario:cold,kind:lookup}': [],
    'dropped_iterations{scenario:cold}': [],
    // Coalescing: about one backend read per evicted id and round, not one per request.
    cold_backend_reads_per_eviction: ['value<=1.2'],
    cold_backend_reads: [],
    cold_coalesced_waits: [],
    cold_cache_misses: [],
    cold_evictions: [],
  },
};

// Counters and histogram counts from the gateway's Prometheus text.
function scrape() {
  const r = http.get(`${BASE}/metrics`, { responseType: 'text', tags: { kind: 'metrics' } });
  if (r.status !== 200) throw new Error(`GET /metrics: ${r.status}`);
  const out = [];
  for (const line of r.body.split('\n')) {
    const m = /^([a-z_]+)(?:\{(.*)\})? ([0-9.e+-]+)$/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(/([a-z_]+)="([^"]*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: parseFloat(m[3]) });
  }
  return out;
}

function sum(samples, name, want) {
  return samples
    .filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

function counts(samples) {
  return {
    // Single-id fills: Elasticsearch first, ClickHouse for orders older than the hot window.
    reads: sum(samples, 'backend_call_duration_seconds_count', { backend: 'elasticsearch', call: 'get_order' }) +
      sum(samples, 'backend_call_duration_seconds_count', { backend: 'clickhouse', call: 'get_orders' }),
    coalesced: sum(samples, 'cache_coalesced_waits_total', {}),
    misses: sum(samples, 'cache_lookups_total', { result: 'miss' }),
    evictions: sum(samples, 'http_requests_total', { route: '/admin/cache/orders/{order_id}', method: 'DELETE', status: '200' }),
  };
}

export function setup() {
  if (ids.length < N) throw new Error(`need ${N} ids in IDS, got ${ids.length}`);
  return counts(scrape());
}

export function round() {
  if (__ENV.EVICT === '1') {
    const del = http.batch(ids.map((id) => ['DELETE', `${BASE}/admin/cache/orders/${id}`, null,
      { headers: AUTH, tags: { name: 'DELETE /admin/cache/orders/{order_id}', kind: 'evict' } }]));
    del.forEach((r) => check(r, { 'evicted': (x) => x.status === 200 }));
  }
  const reqs = [];
  for (let i = 0; i < FANOUT; i++) {
    reqs.push(['GET', `${BASE}/v1/orders/${ids[i % ids.length]}`, null,
      { headers: AUTH, tags: { name: 'GET /v1/orders/{order_id}', kind: 'lookup' } }]);
  }
  http.batch(reqs).forEach((r) => check(r, { 'status 200': (x) => x.status === 200 }));
}

export function teardown(before) {
  const after = counts(scrape());
  const d = Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - before[k]]));
  backendReads.add(d.reads);
  coalesced.add(d.coalesced);
  misses.add(d.misses);
  evictions.add(d.evictions);
  readsPerEviction.add(d.evictions ? d.reads / d.evictions : 0);
}

export function handleSummary(data) {
  const v = (name) => (data.metrics[name] ? data.metrics[name].values.count || 0 : 0);
  const r = row(data, { scenario: 'cold-miss storm', tag: 'scenario:cold,kind:lookup', targetRps: ROUNDS * FANOUT,
    durationS: seconds(DURATION), match: ['scenario:cold', 'cold_'] });
  r.errors = (data.metrics['http_req_failed{scenario:cold}'] || { values: {} }).values.passes || 0;
  r.dropped = (data.metrics['dropped_iterations{scenario:cold}'] || { values: {} }).values.count || 0;
  r.note = `${N} ids x ${ROUNDS} rounds/s x ${FANOUT} requests: ${v('cold_evictions')} evictions, ` +
    `${v('cold_cache_misses')} misses, ${v('cold_coalesced_waits')} coalesced, ${v('cold_backend_reads')} backend reads`;
  return summarize('4-cold-miss-storm', data, [r]);
}
