"""schemathesis hooks for scripts/fuzz.sh (loaded through SCHEMATHESIS_HOOKS).

1. Plausible ranges. `from`/`to` of the searches and analytics must be in
order and at most a few years apart, which OpenAPI cannot say; independent
date-times almost never are, so nearly every generated request would stop at
the range check and the other parameters (tz, group_by, metric, currency...)
would never reach Elasticsearch or ClickHouse. `flatmap_query` lets hypothesis
either keep the generated query or give it a valid range (a fixed anchor, not
the clock, so runs repeat): both kinds of request are sent.

2. One check, `gateway_not_a_server_error`, used instead of the built-in
`not_a_server_error`: the same check, except for the one 5xx the API promises
on a healthy stack. `GET /v1/orders/{order_id}?min_version=N` answers 503
(with Retry-After) when version N of the order is not visible within
cache.read_your_writes_wait: the gateway cannot tell a version that has not
arrived yet from one that never will, and must not serve an older view
(README, "read your writes"). A fuzzer asking for version 9e18 of a real order
gets exactly that. Every other 5xx still fails the run, including a 503 on that
route without min_version or with another reason.
"""

import json
from datetime import datetime, timedelta, timezone

import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

RANGED = {
    "/v1/orders",
    "/v1/analytics/kpis",
    "/v1/analytics/timeseries",
    "/v1/analytics/top-skus",
    "/v1/analytics/status-funnel",
}
ANCHOR = datetime(2019, 1, 1, tzinfo=timezone.utc)


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _with_range(query: dict, start_hours: int, span_hours: int) -> dict:
    start = ANCHOR + timedelta(hours=start_hours)
    return {**query, "from": _stamp(start), "to": _stamp(start + timedelta(hours=span_hours))}


@schemathesis.hook
def flatmap_query(ctx, query):
    op = ctx.operation
    if op is None or op.path not in RANGED or not isinstance(query, dict):
        return st.just(query)
    # Up to ~8 years after the anchor, 1 hour to 1 year long.
    valid = st.builds(_with_range, st.just(query), st.integers(0, 8 * 365 * 24), st.integers(1, 365 * 24))
    return st.one_of(st.just(query), valid)


def _is_read_your_writes_wait(response, case) -> bool:
    if response.status_code != 503 or case.operation.path != "/v1/orders/{order_id}":
        return False
    if "min_version" not in (case.query or {}):
        return False
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    detail = body.get("detail", "") if isinstance(body, dict) else ""
    return (
        body.get("type") == "urn:order-gateway:problem:unavailable"
        and "is not visible yet" in detail
        and "retry-after" in {k.lower() for k in response.headers}
    )


@schemathesis.check
def gateway_not_a_server_error(ctx, response, case):
    """not_a_server_error, except the documented read-your-writes 503."""
    if _is_read_your_writes_wait(response, case):
        return None
    return not_a_server_error(ctx, response, case)
