//! RFC 9457 problem details: every error the API returns is built here.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use super::HttpResponse;
use crate::backends::{Backend, BackendError};

/// Media type of error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Everything that can go wrong while answering a request, and whose fault it is.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The client asked for something that is not there.
    #[error("{0}")]
    NotFound(String),
    /// The route exists, the method does not.
    #[error("method {method} is not allowed here; allowed: {allow}")]
    MethodNotAllowed { method: Method, allow: String },
    /// A parameter is malformed or out of range.
    #[error("{detail}")]
    BadRequest { param: String, detail: String },
    /// A backend the answer needs is down or too slow.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The gateway is shutting down or otherwise not taking this request.
    #[error("{0}")]
    Unavailable(String),
    /// No credential, or one that is not valid (401).
    #[error("{detail}")]
    Unauthorized { detail: String, invalid_token: bool },
    /// A valid credential without the scope the route needs (403).
    #[error("{0}")]
    Forbidden(String),
    /// The client has `subscribe.max_streams_per_client` live streams open (429).
    #[error("{0}")]
    TooManyStreams(String),
    /// The client's (or everyone's) rate limit is spent (429).
    #[error("{}", rate_limited_detail(info, *global))]
    RateLimited { info: crate::edge::RateInfo, global: bool },
    /// `server.max_in_flight` requests are being handled (503, shed at once).
    #[error("{0}")]
    Overloaded(String),
    /// The request body did not arrive within `server.body_read_timeout` (408).
    #[error("{0}")]
    RequestTimeout(String),
    /// The request body is larger than `server.max_body_bytes` (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request's headers are larger than `server.max_header_bytes` (431).
    #[error("{0}")]
    HeadersTooLarge(String),
    /// A reload found the new configuration invalid; the old one stays (422).
    #[error("the new configuration was refused and the running one kept: {0}")]
    ConfigRefused(String),
    /// A bug: never the client's fault.
    #[error("{0}")]
    Internal(String),
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    instance: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    backend: Option<Backend>,
    /// With `backend`: `timeout`, `unavailable`, `refused` or `circuit_open`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    invalid_params: Vec<InvalidParam<'a>>,
}

#[derive(Serialize)]
struct InvalidParam<'a> {
    name: &'a str,
    reason: &'a str,
}

impl From<crate::edge::EdgeError> for ApiError {
    fn from(e: crate::edge::EdgeError) -> Self {
        use crate::edge::EdgeError;
        match e {
            EdgeError::Unauthorized { detail, invalid_token } => ApiError::Unauthorized { detail, invalid_token },
            EdgeError::Forbidden(detail) => ApiError::Forbidden(detail),
            EdgeError::RateLimited { info, global } => ApiError::RateLimited { info, global },
        }
    }
}

impl ApiError {
    /// A bad parameter, named.
    pub fn bad_param(param: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::BadRequest { param: param.into(), detail: detail.into() }
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Backend(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } | ApiError::TooManyStreams(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::ConfigRefused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "not-found",
            ApiError::MethodNotAllowed { .. } => "method-not-allowed",
            ApiError::BadRequest { .. } => "invalid-parameter",
            ApiError::Backend(BackendError::Timeout { .. }) => "backend-timeout",
            ApiError::Backend(_) => "backend-unavailable",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::RateLimited { .. } => "rate-limited",
            ApiError::TooManyStreams(_) => "too-many-streams",
            ApiError::Overloaded(_) => "overloaded",
            ApiError::RequestTimeout(_) => "request-timeout",
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::HeadersTooLarge(_) => "headers-too-large",
            ApiError::ConfigRefused(_) => "config-refused",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The problem+json response; `instance` is the request path, `request_id`
    /// lets the client quote the failing request to an operator.
    pub fn into_response(self, instance: &str, request_id: &str) -> HttpResponse {
        let status = self.status();
        let (backend, reason, invalid_params) = match &self {
            ApiError::Backend(e) => (Some(e.backend()), Some(e.reason()), Vec::new()),
            ApiError::BadRequest { param, detail } => (None, None, vec![InvalidParam { name: param, reason: detail }]),
            _ => (None, None, Vec::new()),
        };
        let detail = match &self {
            // The backend's own words (hosts, URLs, cause chains) go to the
            // log with the request id, never to the client.
            ApiError::Backend(e) => {
                tracing::warn!(request_id, backend = e.backend().name(), reason = e.reason(), error = %e, "backend failure answered with 503");
                e.public_detail()
            }
            _ => self.to_string(),
        };
        let problem = Problem {
            kind: format!("urn:order-gateway:problem:{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            instance,
            request_id,
            backend,
            reason,
            invalid_params,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let ApiError::MethodNotAllowed { allow, .. } = &self {
            if let Ok(v) = HeaderValue::from_str(allow) {
                headers.insert(header::ALLOW, v);
            }
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            let secs = match &self {
                // An open circuit says when it lets calls through again.
                ApiError::Backend(BackendError::CircuitOpen { retry_in: Some(r), .. }) => r.as_secs().max(1),
                _ => 1,
            };
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        match &self {
            ApiError::Unauthorized { invalid_token, .. } => {
                let challenge = if *invalid_token {
                    "Bearer realm=\"order-gateway\", error=\"invalid_token\""
                } else {
                    "Bearer realm=\"order-gateway\""
                };
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            }
            ApiError::RateLimited { info, .. } => {
                rate_limit_headers(headers, info);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(info.retry_after_secs.unwrap_or(1)));
            }
            _ => {}
        }
        resp
    }
}

/// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds),
/// as in the IETF httpapi rate-limit headers draft.
pub fn rate_limit_headers(headers: &mut http::HeaderMap, info: &crate::edge::RateInfo) {
    // Static names: a `&str` name is copied into a new HeaderName per request.
    const LIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit-limit");
    const REMAINING: http::HeaderName = http::HeaderName::from_static("ratelimit-remaining");
    const RESET: http::HeaderName = http::HeaderName::from_static("ratelimit-reset");
    headers.reserve(3);
    headers.insert(LIMIT, number(info.limit.into()));
    headers.insert(REMAINING, number(info.remaining.into()));
    headers.insert(RESET, number(info.reset_secs));
}

/// Numbers up to this one come from a table made once, as header values over
/// static bytes: a `HeaderValue::from(u64)` is two allocations, three such
/// headers per answer were half of a cache hit's allocations, and clones of
/// static bytes touch no shared counter. Rate-limit buckets and reset times
/// are small (the largest shipped bucket, premium's, holds 10,000); a larger
/// number is formatted as before.
const NUMBERS: u64 = 10_000;

/// `n` as a header value.
fn number(n: u64) -> HeaderValue {
    static TABLE: std::sync::OnceLock<Vec<HeaderValue>> = std::sync::OnceLock::new();
    if n > NUMBERS {
        return HeaderValue::from(n);
    }
    let table = TABLE.get_or_init(|| {
        // One string of every number, leaked once (about 40 kB): the values
        // must be 'static for `from_static`.
        let all: &'static str = Box::leak((0..=NUMBERS).map(|i| i.to_string()).collect::<String>().into_boxed_str());
        let mut at = 0;
        (0..=NUMBERS)
            .map(|i| {
                let len = i.checked_ilog10().map_or(1, |d| d as usize + 1);
                let v = HeaderValue::from_static(&all[at..at + len]);
                at += len;
                v
            })
            .collect()
    });
    table[n as usize].clone()
}

fn rate_limited_detail(info: &crate::edge::RateInfo, global: bool) -> String {
    let whose = if global { "the gateway's global rate limit" } else { "this client's rate limit" };
    format!("{whose} of {} request units is spent; retry in {} s", info.limit, info.retry_after_secs.unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(resp: HttpResponse) -> serde_json::Value {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn numbers_from_the_table_read_as_formatted() {
        for n in [0, 1, 9, 10, 99, 100, 999, 1000, 9_999, 10_000, 10_001, 123_456, u64::MAX] {
            assert_eq!(number(n), HeaderValue::from(n), "{n}");
        }
        for n in 0..=NUMBERS {
            assert_eq!(number(n).to_str().unwrap(), n.to_string());
        }
    }

    #[tokio::test]
    async fn bad_request_names_the_parameter() {
        let resp =
            ApiError::bad_param("limit", "limit must be between 1 and 100, got 0").into_response("/v1/orders", "r-1");
        assert_eq!(resp.status(), 400);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let v = body_json(resp).await;
        assert_eq!(v["invalid_params"][0]["name"], "limit");
        assert_eq!(v["request_id"], "r-1");
        assert_eq!(v["instance"], "/v1/orders");
        assert_eq!(v["status"], 400);
    }

    #[tokio::test]
    async fn method_not_allowed_carries_allow() {
        let resp = ApiError::MethodNotAllowed { method: Method::POST, allow: "GET, HEAD".into() }
            .into_response("/healthz", "");
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()[header::ALLOW], "GET, HEAD");
    }

    #[tokio::test]
    async fn backend_errors_name_the_backend_and_are_retryable() {
        let err =
            BackendError::Timeout { backend: Backend::Elasticsearch, timeout: std::time::Duration::from_millis(200) };
        let resp = ApiError::from(err).into_response("/v1/orders/x", "");
        assert_eq!(resp.status(), 503);
        assert!(resp.headers().contains_key(header::RETRY_AFTER));
        let v = body_json(resp).await;
        assert_eq!(v["backend"], "elasticsearch");
        assert_eq!(v["reason"], "timeout");
        assert_eq!(v["type"], "urn:order-gateway:problem:backend-timeout");
    }

    #[tokio::test]
    async fn backend_problems_carry_a_stable_reason_and_no_internals() {
        let internal = "error sending request for url (http://10.1.2.3:9200/orders-read/_search): connection refused";
        let cases = [
            (BackendError::Failed { backend: Backend::Elasticsearch, detail: internal.into() }, "unavailable", "1"),
            (BackendError::Refused { backend: Backend::ClickHouse, detail: internal.into() }, "refused", "1"),
            (
                BackendError::CircuitOpen {
                    backend: Backend::ClickHouse,
                    detail: format!("circuit open after 5 consecutive failures (last: {internal})"),
                    retry_in: Some(std::time::Duration::from_millis(4200)),
                },
                "circuit_open",
                "4",
            ),
        ];
        for (err, reason, retry_after) in cases {
            let backend = err.backend().name();
            let resp = ApiError::from(err).into_response("/v1/orders/x", "r-9");
            assert_eq!(resp.headers()[header::RETRY_AFTER], retry_after);
            let v = body_json(resp).await;
            assert_eq!((v["backend"].as_str(), v["reason"].as_str()), (Some(backend), Some(reason)), "{v}");
            let detail = v["detail"].as_str().unwrap();
            assert!(detail.starts_with(backend) && detail.ends_with(&format!("({reason})")), "{v}");
            for leak in ["10.1.2.3", "http", "_search", "connection refused", "last:"] {
                assert!(!v.to_string().contains(leak), "{leak} leaked: {v}");
            }
        }
    }
}
