//! Parameter parsing and validation: every failure names the parameter.

use std::collections::BTreeMap;

use super::ApiError;
use crate::model::Timestamp;

/// Longest id or order number accepted.
pub const MAX_ID_LEN: usize = 128;

/// An order, customer or fulfilment id, or an order number: 1 to 128 of
/// `[A-Za-z0-9._:-]`.
pub fn id<'a>(param: &str, v: &'a str) -> Result<&'a str, ApiError> {
    if v.is_empty() {
        return Err(ApiError::bad_param(param, format!("{param} must not be empty")));
    }
    if v.len() > MAX_ID_LEN {
        return Err(ApiError::bad_param(
            param,
            format!("{param} is {} characters long; at most {MAX_ID_LEN} are allowed", v.len()),
        ));
    }
    // Bytes, not chars: every id on the hot path is checked, and any byte of
    // a multi-byte character fails the test anyway.
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-');
    if !v.bytes().all(allowed) {
        let c = v.chars().find(|c| !c.is_ascii() || !allowed(*c as u8)).unwrap_or_default();
        return Err(ApiError::bad_param(
            param,
            format!("{param} contains {c:?}; only letters, digits and . _ : - are allowed"),
        ));
    }
    Ok(v)
}

/// Query parameters, decoded; a repeated or unknown parameter is an error.
pub fn query(raw: Option<&str>, allowed: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(ApiError::bad_param(
                k.as_ref(),
                format!("unknown parameter {k:?}; allowed: {}", allowed.join(", ")),
            ));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(ApiError::bad_param(k.as_ref(), format!("{k} is given more than once")));
        }
    }
    Ok(out)
}

/// An integer in `lo..=hi`.
pub fn int_in(param: &str, v: &str, lo: u64, hi: u64) -> Result<u64, ApiError> {
    let n: u64 =
        v.parse().map_err(|_| ApiError::bad_param(param, format!("{param} must be a whole number, got {v:?}")))?;
    if n < lo || n > hi {
        return Err(ApiError::bad_param(param, format!("{param} must be between {lo} and {hi}, got {n}")));
    }
    Ok(n)
}

/// An RFC 3339 timestamp.
pub fn time(param: &str, v: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse(v).map_err(|_| {
        ApiError::bad_param(
            param,
            format!("{param} must be an RFC 3339 timestamp such as 2025-01-31T00:00:00Z, got {v:?}"),
        )
    })
}

/// A value of one of our enums.
pub fn one_of<T: std::str::FromStr<Err = String>>(param: &str, v: &str) -> Result<T, ApiError> {
    v.parse().map_err(|e: String| ApiError::bad_param(param, format!("{param}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param_of(e: ApiError) -> String {
        match e {
            ApiError::BadRequest { param, .. } => param,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ids() {
        assert!(id("order_id", "0b9f3c1e-2f4e-4b8e-9a57-3c1d2e4f5a6b").is_ok());
        assert_eq!(param_of(id("order_id", "").unwrap_err()), "order_id");
        assert_eq!(param_of(id("order_id", &"a".repeat(129)).unwrap_err()), "order_id");
        assert_eq!(param_of(id("order_id", "a b").unwrap_err()), "order_id");
        assert_eq!(param_of(id("order_id", "a/../b").unwrap_err()), "order_id");
    }

    proptest::proptest! {
        /// The byte-wise check accepts exactly the ids of the character rule,
        /// and a refusal names the first character outside it, multi-byte ones included.
        #[test]
        fn ids_match_the_character_rule(v in "[a-zA-Z0-9._:/ é€-]{1,40}") {
            let first_bad = v.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')));
            match (id("order_id", &v), first_bad) {
                (Ok(got), None) => proptest::prop_assert_eq!(got, v.as_str()),
                (Err(ApiError::BadRequest { detail, .. }), Some(c)) => {
                    let named = format!("contains {c:?}");
                    proptest::prop_assert!(detail.contains(&named), "{}", detail)
                }
                (got, want) => proptest::prop_assert!(false, "{v:?}: {got:?}, first bad char {want:?}"),
            }
        }
    }

    #[test]
    fn queries() {
        let q = query(Some("limit=5&status=shipped"), &["limit", "status"]).unwrap();
        assert_eq!(q["limit"], "5");
        assert_eq!(param_of(query(Some("limt=5"), &["limit"]).unwrap_err()), "limt");
        assert_eq!(param_of(query(Some("limit=5&limit=6"), &["limit"]).unwrap_err()), "limit");
        assert_eq!(param_of(int_in("limit", "0", 1, 100).unwrap_err()), "limit");
        assert_eq!(param_of(int_in("limit", "x", 1, 100).unwrap_err()), "limit");
        assert_eq!(param_of(time("from", "yesterday").unwrap_err()), "from");
        assert_eq!(param_of(one_of::<crate::model::OrderStatus>("status", "lost").unwrap_err()), "status");
    }
}
