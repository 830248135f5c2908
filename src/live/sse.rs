//! Server-Sent Events as bytes (the `text/event-stream` format of the HTML
//! standard): one event is `event:`, optional `id:`, one `data:` line and a
//! blank line; a line starting with `:` is a comment (the heartbeat).

use bytes::{BufMut, Bytes, BytesMut};

/// An event whose data is one line (JSON as serde writes it has no raw line
/// breaks: they are escaped inside strings).
pub fn event(name: &str, id: Option<&str>, data: &[u8]) -> Bytes {
    debug_assert!(!data.contains(&b'\n') && !data.contains(&b'\r'), "one data line");
    let mut out = BytesMut::with_capacity(name.len() + id.map_or(0, |i| i.len() + 5) + data.len() + 16);
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_u8(b'\n');
    if let Some(id) = id {
        out.put_slice(b"id: ");
        out.put_slice(id.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_slice(b"data: ");
    out.put_slice(data);
    out.put_slice(b"\n\n");
    out.freeze()
}

/// An event with a JSON object for data.
pub fn json_event(name: &str, value: &serde_json::Value) -> Bytes {
    event(name, None, &serde_json::to_vec(value).expect("JSON values serialise"))
}

/// The first bytes of a stream: how long a client waits before reconnecting.
pub fn retry(millis: u128) -> Bytes {
    Bytes::from(format!("retry: {millis}\n\n"))
}

/// A comment line: keeps proxies from closing a quiet stream.
pub const HEARTBEAT: &[u8] = b": keep-alive\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_its_fields_then_a_blank_line() {
        assert_eq!(&event("order", Some("o5"), br#"{"a":1}"#)[..], b"event: order\nid: o5\ndata: {\"a\":1}\n\n");
        assert_eq!(&event("lagged", None, b"{}")[..], b"event: lagged\ndata: {}\n\n");
        let escaped = json_event("degraded", &serde_json::json!({"detail": "two\nlines"}));
        assert_eq!(escaped.iter().filter(|b| **b == b'\n').count(), 3, "the data stays one line");
    }
}
