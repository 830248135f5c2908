//! Opaque search cursors: the position after the last hit (`search_after`),
//! bound to the query that produced it, signed, and dated. A forged cursor, a
//! cursor from another query, or an old one is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a cursor carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// The last hit's sort values: `order.created_at` (ms) and `order_id`.
    pub after: (i64, String),
    /// Hash of the query's filters; a cursor only continues its own query.
    pub query: u64,
    /// Issued at, seconds since the epoch.
    pub issued: i64,
}

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("cursor is malformed")]
    Malformed,
    #[error("cursor signature does not match (forged, or issued with another key)")]
    BadSignature,
    #[error("cursor belongs to a different query")]
    OtherQuery,
    #[error("cursor has expired; start the search again")]
    Expired,
}

/// Signs and checks cursors with one key.
#[derive(Clone)]
pub struct CursorCodec {
    key: Vec<u8>,
    ttl_secs: i64,
}

impl CursorCodec {
    /// A codec with `key` (empty: a random key for this process).
    pub fn new(key: &str, ttl: std::time::Duration) -> Self {
        let key = if key.is_empty() {
            uuid::Uuid::new_v4().as_bytes().iter().chain(uuid::Uuid::new_v4().as_bytes()).copied().collect()
        } else {
            key.as_bytes().to_vec()
        };
        CursorCodec { key, ttl_secs: ttl.as_secs() as i64 }
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        m.update(payload);
        m
    }

    /// `<payload>.<signature>`, both base64url.
    pub fn encode(&self, pos: &Position) -> String {
        let payload = serde_json::to_vec(pos).expect("positions serialise");
        let sig = self.mac(&payload).finalize().into_bytes();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(&sig[..16]))
    }

    /// Checks signature, query and age; `now` in seconds since the epoch.
    pub fn decode(&self, cursor: &str, query: u64, now: i64) -> Result<Position, CursorError> {
        let (p, s) = cursor.split_once('.').ok_or(CursorError::Malformed)?;
        let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| CursorError::Malformed)?;
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| CursorError::Malformed)?;
        // Constant-time comparison of the truncated tag.
        self.mac(&payload).verify_truncated_left(&sig).map_err(|_| CursorError::BadSignature)?;
        if sig.len() != 16 {
            return Err(CursorError::BadSignature);
        }
        let pos: Position = serde_json::from_slice(&payload).map_err(|_| CursorError::Malformed)?;
        if pos.query != query {
            return Err(CursorError::OtherQuery);
        }
        if now - pos.issued > self.ttl_secs || pos.issued > now + 60 {
            return Err(CursorError::Expired);
        }
        Ok(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn codec() -> CursorCodec {
        CursorCodec::new("k", std::time::Duration::from_secs(3600))
    }

    proptest! {
        #[test]
        fn round_trips(ms in any::<i64>(), id in "[a-z0-9-]{1,40}", q in any::<u64>()) {
            let pos = Position { after: (ms, id), query: q, issued: 1_000 };
            let c = codec().encode(&pos);
            prop_assert_eq!(codec().decode(&c, q, 1_100).unwrap(), pos);
        }

        #[test]
        fn any_tampering_is_refused(flip in 0usize..200) {
            let c = codec().encode(&Position { after: (5, "o-1".into()), query: 9, issued: 1_000 });
            let mut bytes = c.into_bytes();
            let i = flip % bytes.len();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(bytes).unwrap();
            prop_assert!(codec().decode(&forged, 9, 1_000).is_err());
        }
    }

    #[test]
    fn other_query_other_key_and_age_are_refused() {
        let pos = Position { after: (5, "o-1".into()), query: 9, issued: 1_000 };
        let c = codec().encode(&pos);
        assert_eq!(codec().decode(&c, 8, 1_000), Err(CursorError::OtherQuery));
        assert_eq!(codec().decode(&c, 9, 1_000 + 3601), Err(CursorError::Expired));
        let other = CursorCodec::new("other", std::time::Duration::from_secs(3600));
        assert_eq!(other.decode(&c, 9, 1_000), Err(CursorError::BadSignature));
        assert_eq!(codec().decode("garbage", 9, 1_000), Err(CursorError::Malformed));
    }
}
