//! Handlers, one module per resource, and the one place errors become HTTP.

pub mod admin;
pub mod analytics;
pub mod events;
pub mod health;
pub mod openapi;
pub mod orders;
pub mod params;
pub mod problem;
pub mod search;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

pub use problem::ApiError;

/// The response type every handler returns.
pub type HttpResponse = Response<Full<Bytes>>;

/// A JSON response from bytes already serialised.
pub fn json_bytes(status: StatusCode, body: impl Into<Bytes>) -> HttpResponse {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    // Room for every header a lookup answer carries (ETag, X-Cache, request
    // id, rate-limit headers, ...): one allocation instead of regrowing.
    *resp.headers_mut() = http::HeaderMap::with_capacity(12);
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A JSON response from a serialisable value.
pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> HttpResponse {
    match serde_json::to_vec(value) {
        Ok(bytes) => json_bytes(status, bytes),
        Err(e) => ApiError::Internal(format!("cannot serialise response: {e}")).into_response("", ""),
    }
}
