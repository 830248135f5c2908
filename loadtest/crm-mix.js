// What a CRM's agents send, at a constant arrival rate (open model):
//   80 %  an order by id (Zipf-like skew over the seeded ids: mostly cache hits)
//   15 %  a customer's orders (GET /v1/customers/{customer_id}/orders: Elasticsearch)
//    5 %  a search: free text (q=) or by status (Elasticsearch)
//
//   k6 run -e BASE_URL=... -e API_KEY=... -e IDS=ids.json -e CRM=crm.json -e CRM_RATE=1000 -e DURATION=30s crm-mix.js
//
// CRM: {"customers": [...], "terms": [...]} (run.sh writes it from the seed's
// truth file: customer ids, and SKUs, cities and order numbers to search for).
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
import { AUTH, BASE, TREND_STATS, row, seconds, summarize, zipfIndex } from './lib.js';

const RATE = parseInt(__ENV.CRM_RATE || '1000', 10);
const DURATION = __ENV.DURATION || '30s';
const ids = new SharedArray('ids', () => JSON.parse(open(__ENV.IDS || 'ids.json')));
const customers = new SharedArray('customers', () => JSON.parse(open(__ENV.CRM || 'crm.json')).customers);
const terms = new SharedArray('terms', () => JSON.parse(open(__ENV.CRM || 'crm.json')).terms);
const STATUSES = ['created', 'confirmed', 'allocated', 'partially_shipped', 'shipped', 'delivered', 'cancelled', 'returned'];

const pick = (a) => a[Math.floor(Math.random() * a.length)];

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: TREND_STATS,
  scenarios: {
    crm: { executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s', duration: DURATION,
           preAllocatedVUs: 50, maxVUs: 500, exec: 'mix' },
  },
  thresholds: {
    'http_req_duration{scenario:crm,kind:by_id}': ['p(99)<5'],
    'http_req_duration{scenario:crm,kind:customer}': ['p(99)<100'],
    'http_req_duration{scenario:crm,kind:search}': ['p(99)<200'],
    'http_req_failed{scenario:crm}': ['rate<0.001'],
    'http_req_duration{scenario:crm}': [],
    'http_reqs{scenario:crm}': [],
    'http_reqs{scenario:crm,kind:by_id}': [],
    'http_reqs{scenario:crm,kind:customer}': [],
    'http_reqs{scenario:crm,kind:search}': [],
    'http_req_failed{scenario:crm,kind:by_id}': [],
    'http_req_failed{scenario:crm,kind:customer}': [],
    'http_req_failed{scenario:crm,kind:search}': [],
    'dropped_iterations{scenario:crm}': [],
  },
};

export function mix() {
  const x = Math.random();
  let r;
  if (x < 0.8) {
    r = http.get(`${BASE}/v1/orders/${ids[zipfIndex(ids.length)]}`,
      { headers: AUTH, tags: { name: 'GET /v1/orders/{order_id}', kind: 'by_id' } });
  } else if (x < 0.95) {
    r = http.get(`${BASE}/v1/customers/${pick(customers)}/orders?limit=20`,
      { headers: AUTH, tags: { name: 'GET /v1/customers/{customer_id}/orders', kind: 'customer' } });
  } else if (x < 0.975) {
    r = http.get(`${BASE}/v1/orders?q=${encodeURIComponent(pick(terms))}&limit=20`,
      { headers: AUTH, tags: { name: 'GET /v1/orders?q=', kind: 'search' } });
  } else {
    r = http.get(`${BASE}/v1/orders?status=${pick(STATUSES)}&limit=20`,
      { headers: AUTH, tags: { name: 'GET /v1/orders?status=', kind: 'search' } });
  }
  check(r, { 'status 200': (y) => y.status === 200 });
}

export function handleSummary(data) {
  const s = seconds(DURATION);
  const all = row(data, { scenario: 'CRM mix (80/15/5)', tag: 'scenario:crm', targetRps: RATE, durationS: s,
    match: ['scenario:crm}'] });
  const part = (kind, label, share) => {
    const r = row(data, { scenario: `CRM mix: ${label}`, tag: `scenario:crm,kind:${kind}`, targetRps: Math.round(RATE * share), durationS: s });
    r.dropped = null;
    return r;
  };
  return summarize('2-crm-mix', data, [all, part('by_id', 'by id', 0.8), part('customer', "customer's orders", 0.15), part('search', 'search', 0.05)]);
}
