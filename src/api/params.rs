//! Parameter parsing and validation: every failure names the parameter.

use std::collections::BTreeMap;

use super::ApiError;
use crate::model::Timestamp;

/// Longest id or order number accepted.
pub const MAX_ID_LEN: usize = 128;

/// The bytes an id may hold: ASCII letters and digits, `.`, `_`, `:` and `-`.
const ID_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-');
        b += 1;
    }
    t
};

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
    // Bytes, not chars, through a table: every id on the hot path is checked,
    // and any byte of a multi-byte character fails the test anyway.
    let allowed = |b: u8| ID_BYTES[usize::from(b)];
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

/// One end of a time range, as the client wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// An RFC 3339 timestamp: one instant, whatever the request's zone.
    Instant(Timestamp),
    /// A date (`2025-01-31`): the day's first instant in the request's zone.
    Day(jiff::civil::Date),
}

impl Bound {
    /// The instant it names: a timestamp's own; a date's first instant in
    /// `tz` (`tz_name` in errors), its midnight, or the end of the gap on a
    /// day whose clocks jump over midnight. Fails only for dates `tz` cannot
    /// place (near the years -9999 and 9999).
    pub fn start_in(self, param: &str, tz: &jiff::tz::TimeZone, tz_name: &str) -> Result<Timestamp, ApiError> {
        let day = match self {
            Bound::Instant(t) => return Ok(t),
            Bound::Day(day) => day,
        };
        day.to_zoned(tz.clone())
            .and_then(|z| z.start_of_day())
            .map(|z| Timestamp(z.timestamp().as_millisecond()))
            .map_err(|e| ApiError::bad_param(param, format!("{param}: {day} has no start in {tz_name}: {e}")))
    }
}

/// An RFC 3339 timestamp or a date (`YYYY-MM-DD`, exactly). A date that
/// does not exist (`2025-02-30`) is refused, not carried over.
pub fn time_or_date(param: &str, v: &str) -> Result<Bound, ApiError> {
    let refuse = |why: &str| {
        ApiError::bad_param(
            param,
            format!(
                "{param} must be an RFC 3339 timestamp such as 2025-01-31T00:00:00Z or a date such as 2025-01-31, got {v:?}{why}"
            ),
        )
    };
    match date_fields(v) {
        Some((y, m, d)) => jiff::civil::Date::new(y, m, d).map(Bound::Day).map_err(|_| refuse(": no such day")),
        None => Timestamp::parse(v).map(Bound::Instant).map_err(|_| refuse("")),
    }
}

/// Year, month and day of a value shaped `DDDD-DD-DD`; the calendar is
/// checked by the caller. Only this shape: a lenient date parser would also
/// take week dates, ordinal dates or a date-time with its time dropped.
fn date_fields(v: &str) -> Option<(i16, i8, i8)> {
    let b = v.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r.clone()].iter().all(u8::is_ascii_digit).then(|| &v[r]);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    Some((digits(0..4)?.parse().ok()?, digits(5..7)?.parse().ok()?, digits(8..10)?.parse().ok()?))
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
        assert_eq!(param_of(time_or_date("to", "yesterday").unwrap_err()), "to");
        assert_eq!(param_of(one_of::<crate::model::OrderStatus>("status", "lost").unwrap_err()), "status");
    }

    fn detail_of(e: ApiError) -> String {
        match e {
            ApiError::BadRequest { detail, .. } => detail,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bound_is_a_timestamp_or_a_date() {
        let at = time_or_date("from", "2025-01-31T10:00:00+01:00").unwrap();
        assert_eq!(at, Bound::Instant(Timestamp::parse("2025-01-31T09:00:00Z").unwrap()));
        assert_eq!(time_or_date("from", "2024-02-29").unwrap(), Bound::Day(jiff::civil::date(2024, 2, 29)));
        for bad in [
            "2025-02-30",
            "2025-13-01",
            "2025-1-31",
            "2025-01-31T",
            "20250131",
            "2025-W05-5",
            "+2025-01-31",
            "",
            "٢٠٢٥-01-31",
        ] {
            let e = time_or_date("from", bad).unwrap_err();
            let detail = detail_of(e);
            assert!(detail.starts_with("from must be"), "{bad:?}: {detail}");
            assert!(detail.contains(&format!("{bad:?}")), "{bad:?}: the value is named: {detail}");
            assert!(detail.contains("RFC 3339") && detail.contains("2025-01-31T00:00:00Z"), "{detail}");
            assert!(detail.contains("a date such as 2025-01-31"), "{detail}");
        }
        assert!(detail_of(time_or_date("to", "2025-02-30").unwrap_err()).ends_with("no such day"));
    }

    #[test]
    fn a_date_starts_at_midnight_in_the_zone() {
        let start = |v: &str, zone: &str| {
            let tz = jiff::tz::TimeZone::get(zone).unwrap();
            time_or_date("from", v).unwrap().start_in("from", &tz, zone).unwrap().to_rfc3339()
        };
        assert_eq!(start("2025-01-01", "UTC"), "2025-01-01T00:00:00.000Z");
        assert_eq!(start("2025-01-01", "Europe/Berlin"), "2024-12-31T23:00:00.000Z");
        assert_eq!(start("2025-07-01", "Europe/Berlin"), "2025-06-30T22:00:00.000Z", "summer time");
        assert_eq!(start("2025-01-01", "America/New_York"), "2025-01-01T05:00:00.000Z");
        assert_eq!(start("2025-01-01", "Asia/Kolkata"), "2024-12-31T18:30:00.000Z");
        // Havana's clocks jump from 00:00 to 01:00 that day: it starts at 01:00.
        assert_eq!(start("2024-03-10", "America/Havana"), "2024-03-10T05:00:00.000Z");
        // A timestamp is one instant in every zone.
        assert_eq!(start("2025-01-01T00:00:00Z", "Europe/Berlin"), "2025-01-01T00:00:00.000Z");
    }

    proptest::proptest! {
        /// Every calendar day parses to itself, starts at 00:00 UTC in UTC,
        /// and the next day starts 24 hours later.
        #[test]
        fn dates_are_whole_utc_days(days in 0i64..2_932_897) {
            let day = jiff::civil::date(1, 1, 1) + jiff::Span::new().days(days);
            let text = day.to_string();
            proptest::prop_assert_eq!(time_or_date("from", &text).unwrap(), Bound::Day(day));
            let utc = jiff::tz::TimeZone::UTC;
            let start = Bound::Day(day).start_in("from", &utc, "UTC").unwrap().millis();
            proptest::prop_assert_eq!(start.rem_euclid(86_400_000), 0);
            let next = Bound::Day(day.tomorrow().unwrap()).start_in("to", &utc, "UTC").unwrap().millis();
            proptest::prop_assert_eq!(next - start, 86_400_000);
        }

        /// A value that is neither form is refused naming the parameter and the value.
        #[test]
        fn anything_else_is_refused_with_both_forms(v in "[0-9T:Z.+-]{0,12}") {
            if let Err(e) = time_or_date("to", &v) {
                let detail = detail_of(e);
                proptest::prop_assert!(detail.contains(&format!("{v:?}")), "{}", detail);
                proptest::prop_assert!(detail.contains("RFC 3339") && detail.contains("a date such as"), "{}", detail);
            }
        }
    }
}
