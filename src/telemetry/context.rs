//! Per-request identity: the request id and the W3C trace context.

use http::{HeaderMap, HeaderName, HeaderValue};

/// Header carrying the request id, taken from the client or generated.
pub const REQUEST_ID: &str = "x-request-id";
/// W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";
/// W3C trace context: vendors' state, passed on unchanged with `traceparent`.
pub const TRACESTATE: &str = "tracestate";
/// Longest `tracestate` passed on (W3C: 32 members of at most 256 bytes; 512
/// is what the spec asks every vendor to keep at least). A longer one is
/// dropped, not cut, so no member is passed on half.
const MAX_TRACESTATE: usize = 512;

// The same names as `HeaderName`s made at compile time: a lookup or insert by
// `&str` parses and validates the name on every request.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static(REQUEST_ID);
const TRACEPARENT_HEADER: HeaderName = HeaderName::from_static(TRACEPARENT);
const TRACESTATE_HEADER: HeaderName = HeaderName::from_static(TRACESTATE);

/// Identity of one request, logged on every line and passed to backends.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Kept as the header value it is sent back as: a client's id is the
    /// request's own bytes (no copy), a generated one is made once.
    request_id: HeaderValue,
    pub trace: TraceParent,
}

impl RequestContext {
    /// Takes a well-formed request id and traceparent from the headers, or makes new ones.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let request_id = headers
            .get(&REQUEST_ID_HEADER)
            .filter(|v| v.to_str().is_ok_and(valid_request_id))
            .cloned()
            .unwrap_or_else(new_request_id);
        let trace = match headers.get(&TRACEPARENT_HEADER).and_then(|v| v.to_str().ok()).and_then(TraceParent::parse) {
            Some(mut t) => {
                t.state = tracestate(headers);
                t
            }
            None => TraceParent::new_root(),
        };
        RequestContext { request_id, trace }
    }

    /// The request id, for logs and problem bodies.
    pub fn request_id(&self) -> &str {
        // Only printable ASCII gets in (`valid_request_id`, or hex digits).
        self.request_id.to_str().unwrap_or_default()
    }

    /// The request id as the `x-request-id` response header, once the
    /// request is done with its context (moved, not cloned).
    pub fn into_request_id_header(self) -> HeaderValue {
        self.request_id
    }
}

/// The caller's `tracestate`: one header as it came, several joined with
/// commas (W3C: they are one list split across headers); none when the
/// whole is longer than [`MAX_TRACESTATE`].
fn tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut values = headers.get_all(&TRACESTATE_HEADER).iter();
    let first = values.next()?;
    let Some(second) = values.next() else {
        return (first.len() <= MAX_TRACESTATE).then(|| first.clone());
    };
    let mut joined = first.as_bytes().to_vec();
    for v in std::iter::once(second).chain(values) {
        joined.push(b',');
        joined.extend_from_slice(v.as_bytes());
        if joined.len() > MAX_TRACESTATE {
            return None;
        }
    }
    HeaderValue::from_bytes(&joined).ok()
}

/// Generated request ids a thread makes at a time.
const IDS_PER_BLOCK: usize = 128;

/// A new request id: 32 lowercase hex digits of a random 128-bit number.
///
/// A header value owns its bytes, so each id would be an allocation of its
/// own; instead a thread writes `IDS_PER_BLOCK` of them into one buffer and
/// hands out slices of it (a reference count, no copy), one allocation per
/// 128 requests. The buffer is freed when the last of its ids is.
fn new_request_id() -> HeaderValue {
    thread_local! {
        static BLOCK: std::cell::RefCell<bytes::Bytes> = const { std::cell::RefCell::new(bytes::Bytes::new()) };
    }
    BLOCK.with(|block| {
        let mut block = block.borrow_mut();
        if block.is_empty() {
            let mut buf = bytes::BytesMut::zeroed(32 * IDS_PER_BLOCK);
            for id in buf.chunks_exact_mut(32) {
                hex_into(id, random_u128());
            }
            *block = buf.freeze();
        }
        HeaderValue::from_maybe_shared(block.split_to(32)).expect("hex digits are a valid header value")
    })
}

/// Writes the low `out.len() / 2` bytes of `n` as lowercase hex, most significant first.
fn hex_into(out: &mut [u8], mut n: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(n & 0xf) as usize];
        n >>= 4;
    }
}

/// Random ids without a system call per request: a ChaCha generator per
/// thread, seeded once from the operating system. Ids need to be unique, not
/// secret.
fn random_u128() -> u128 {
    use rand::{Rng, SeedableRng};
    thread_local! {
        static RNG: std::cell::RefCell<rand_chacha::ChaCha8Rng> = std::cell::RefCell::new(
            rand_chacha::ChaCha8Rng::from_seed(*uuid::Uuid::new_v4().as_bytes().repeat(2).first_chunk::<32>().expect("32 bytes")),
        );
    }
    RNG.with(|r| r.borrow_mut().random())
}

/// A client-chosen id is kept when it is short and printable, so it can be
/// logged and echoed without escaping; anything else is replaced.
pub fn valid_request_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'='))
}

/// A trace id (16 bytes), printed as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId(pub u128);

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut hex = [0u8; 32];
        hex_into(&mut hex, self.0);
        f.write_str(std::str::from_utf8(&hex).expect("hex digits are UTF-8"))
    }
}

/// The trace a request belongs to: the caller's (`traceparent`), continued
/// through the gateway with a span of its own, or a new one started here.
/// Held as numbers: most requests never print it (logs below `info`, cache
/// hits call no backend), so it is formatted only when used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    /// The caller's span: the parent of this request's span (0: none, the
    /// trace starts here).
    pub parent_id: u64,
    /// This request's own span, the parent of its backend calls' spans.
    pub span_id: u64,
    /// W3C trace flags; bit 0 (sampled) is the caller's decision, or the
    /// gateway's for a trace that starts here (`tracing.sample_ratio`).
    pub flags: u8,
    /// The caller's `tracestate`, passed on as it came.
    pub state: Option<HeaderValue>,
}

impl TraceParent {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; all-zero ids are invalid per the
    /// spec. The request's own span id is new.
    pub fn parse(v: &str) -> Option<Self> {
        let mut parts = v.trim().split('-');
        let (version, trace_id, parent_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        // Version ff is forbidden; future versions may append fields, version 00 may not.
        if !hex(version, 2) || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        if !hex(trace_id, 32) || !hex(parent_id, 16) || !hex(flags, 2) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace_id, 16).ok()?;
        let parent_id = u64::from_str_radix(parent_id, 16).ok()?;
        if trace_id == 0 || parent_id == 0 {
            return None;
        }
        Some(TraceParent {
            trace_id: TraceId(trace_id),
            parent_id,
            span_id: new_span_id(),
            flags: u8::from_str_radix(flags, 16).ok()?,
            state: None,
        })
    }

    /// A new trace started at the gateway, sampled as `tracing.sample_ratio`
    /// says (never while tracing is off).
    pub fn new_root() -> Self {
        let r = random_u128();
        let trace_id = r | 1;
        let sampled = (trace_id as u64) < ROOT_SAMPLING.load(std::sync::atomic::Ordering::Relaxed);
        TraceParent {
            trace_id: TraceId(trace_id),
            parent_id: 0,
            span_id: (r >> 64) as u64 | 1,
            flags: u8::from(sampled),
            state: None,
        }
    }

    /// Whether this trace is recorded (the sampled flag).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The header value for a call made on behalf of this request whose own
    /// span is `span_id`.
    pub fn header_for(&self, span_id: u64) -> String {
        traceparent_header(self.trace_id, span_id, self.flags)
    }
}

/// A `traceparent` value (version 00) naming `span_id` in `trace_id`, with
/// the sampled flag of `flags` (the other bits are not ours to pass on).
pub fn traceparent_header(trace_id: TraceId, span_id: u64, flags: u8) -> String {
    format!("00-{trace_id}-{span_id:016x}-{:02x}", flags & 1)
}

/// Traces started here are sampled when the low 64 bits of their (random)
/// id are below this: 0 samples none (tracing off), `u64::MAX` all but a
/// 2^-64 share. Set once, by the exporter when it is installed.
static ROOT_SAMPLING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Samples `ratio` (0 to 1) of the traces that start at the gateway.
pub fn sample_roots(ratio: f64) {
    let threshold = if ratio >= 1.0 { u64::MAX } else { (ratio.max(0.0) * u64::MAX as f64) as u64 };
    ROOT_SAMPLING.store(threshold, std::sync::atomic::Ordering::Relaxed);
}

/// A new span id (never 0).
pub fn new_span_id() -> u64 {
    random_u128() as u64 | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_traceparent() {
        let t = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(t.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id, 0x00f067aa0ba902b7);
        assert_eq!(t.flags, 1);
        let child = t.header_for(0x42);
        assert_eq!(child, "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000042-01");
        assert_eq!(TraceParent::parse(&child).unwrap().trace_id, t.trace_id);
        assert_ne!(t.span_id, t.parent_id, "the request has a span of its own");
    }

    #[test]
    fn rejects_malformed_traceparent() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn tracestate_goes_on_with_its_traceparent_only() {
        let mut h = HeaderMap::new();
        h.insert(TRACESTATE, "congo=t61rcWkgMzE".parse().unwrap());
        // No traceparent: a new trace, and the state belonged to the old one.
        assert_eq!(RequestContext::from_headers(&h).trace.state, None);
        h.insert(TRACEPARENT, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00".parse().unwrap());
        let t = RequestContext::from_headers(&h).trace;
        assert_eq!(t.state.as_ref().unwrap(), "congo=t61rcWkgMzE");
        assert!(!t.sampled(), "the caller's decision is kept");
        h.insert(TRACESTATE, "a=b".repeat(200).parse().unwrap());
        assert_eq!(RequestContext::from_headers(&h).trace.state, None, "too long: dropped whole");
        h.insert(TRACESTATE, "a=b".parse().unwrap());
        h.append(TRACESTATE, "c=d".parse().unwrap());
        assert_eq!(RequestContext::from_headers(&h).trace.state.unwrap(), "a=b,c=d", "two headers are one list");
        h.append(TRACESTATE, "e=f".repeat(200).parse().unwrap());
        assert_eq!(RequestContext::from_headers(&h).trace.state, None, "too long together: dropped whole");
    }

    #[test]
    fn a_trace_started_here_is_not_sampled_while_tracing_is_off() {
        let t = TraceParent::new_root();
        assert_eq!((t.parent_id, t.sampled()), (0, false));
        assert!(t.header_for(t.span_id).ends_with("-00"));
    }

    #[test]
    fn request_id_kept_or_replaced() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, "abc-123".parse().unwrap());
        assert_eq!(RequestContext::from_headers(&h).request_id(), "abc-123");
        h.insert(REQUEST_ID, "has space".parse().unwrap());
        let ctx = RequestContext::from_headers(&h);
        let generated = ctx.request_id();
        assert_eq!(generated.len(), 32);
        assert!(generated.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(ctx.clone().into_request_id_header(), generated);
        // Ids cut from one block and from the next are all distinct and well formed.
        let ids: std::collections::HashSet<String> = (0..3 * IDS_PER_BLOCK + 5)
            .map(|_| RequestContext::from_headers(&HeaderMap::new()).into_request_id_header())
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 3 * IDS_PER_BLOCK + 5);
        assert!(ids.iter().all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())));
        // A leading zero digit is kept: ids are always 32 digits.
        let mut small = [0u8; 32];
        hex_into(&mut small, 0xab);
        assert_eq!(&small[28..], b"00ab");
        assert_eq!(TraceId(0x1f).to_string(), format!("{:032x}", 0x1f));
        assert!(!valid_request_id(&"x".repeat(129)));
    }
}
