//! Resume tokens: the `id` of each `order` event, and what a client sends
//! back in `Last-Event-ID`. A token names the view's component versions
//! (the order header's ranked version, each fulfilment's by key), so a
//! replica that never saw the client can still tell whether its current view
//! is newer, older or the same as the last one the client got, from any
//! replica.
//!
//! Form: `o<order>` then `-<fulfilment key>.<version>` per fulfilment, all
//! lowercase hex, fulfilments by key.

use crate::cache::ComponentVersions;

/// Longest token accepted (a view with about 40 fulfilments).
pub const MAX_LEN: usize = 1024;

/// The token of `v`.
pub fn of(v: &ComponentVersions) -> String {
    use std::fmt::Write;
    let mut fs: Vec<(u64, u64)> = v.fulfillments.to_vec();
    fs.sort_unstable();
    let mut out = format!("o{:x}", v.order);
    for (key, version) in fs {
        let _ = write!(out, "-{key:x}.{version:x}");
    }
    out
}

/// The versions a token names; the error says what is wrong with it.
pub fn parse(token: &str) -> Result<ComponentVersions, String> {
    if token.len() > MAX_LEN {
        return Err(format!("is {} bytes long; a resume token is at most {MAX_LEN}", token.len()));
    }
    let hex = |s: &str, what: &str| {
        (!s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
            .ok_or_else(|| format!("has {what} {s:?}, not 1 to 16 lowercase hex digits"))
    };
    let mut parts = token.split('-');
    let head = parts.next().unwrap_or_default();
    let order = hex(head.strip_prefix('o').ok_or("does not start with 'o'")?, "the order version")?;
    let mut fulfillments = Vec::new();
    for p in parts {
        let (key, version) = p.split_once('.').ok_or_else(|| format!("has {p:?}, not <key>.<version>"))?;
        let key = hex(key, "the fulfilment key")?;
        if fulfillments.iter().any(|(k, _)| *k == key) {
            return Err(format!("names fulfilment {key:x} twice"));
        }
        fulfillments.push((key, hex(version, "the fulfilment version")?));
    }
    Ok(ComponentVersions {
        order,
        order_raw: crate::model::unranked(order),
        fulfillments: fulfillments.into_boxed_slice(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn versions(order: u64, fs: Vec<(u64, u64)>) -> ComponentVersions {
        ComponentVersions { order, order_raw: crate::model::unranked(order), fulfillments: fs.into_boxed_slice() }
    }

    #[test]
    fn a_token_names_the_order_and_each_fulfilment_by_key() {
        let v = versions((1 << 62) + 5, vec![(0xff, 3), (0x1a, 2)]);
        assert_eq!(of(&v), "o4000000000000005-1a.2-ff.3");
        assert_eq!(parse("o4000000000000005-1a.2-ff.3").unwrap().order_raw, 5);
    }

    #[test]
    fn a_malformed_token_is_refused_naming_the_fault() {
        for (bad, says) in [
            ("", "does not start with 'o'"),
            ("x12", "does not start with 'o'"),
            ("o", "the order version"),
            ("oZZ", "the order version"),
            ("o1-", "not <key>.<version>"),
            ("o1-2", "not <key>.<version>"),
            ("o1-2.", "the fulfilment version"),
            ("o1-2.3-2.4", "twice"),
            ("o11111111111111111", "1 to 16"),
            ("o1-A.1", "the fulfilment key"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        assert!(parse(&format!("o1{}", "-1.1".repeat(300))).unwrap_err().contains("at most 1024"));
    }

    proptest! {
        #[test]
        fn every_token_parses_back_to_its_versions(
            order in any::<u64>(),
            fs in proptest::collection::btree_map(any::<u64>(), any::<u64>(), 0..8),
        ) {
            let v = versions(order, fs.into_iter().collect());
            let back = parse(&of(&v)).unwrap();
            prop_assert_eq!(back.order, v.order);
            let mut want = v.fulfillments.to_vec();
            want.sort_unstable();
            prop_assert_eq!(back.fulfillments.to_vec(), want);
        }
    }
}
