//! JWT bearer tokens (HS256 or RS256): signature, `exp` (required), `nbf`,
//! and `aud` and `iss` (required when configured) are checked by
//! jsonwebtoken; the `scope` claim becomes scopes.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::principal::{Method, Principal, Scopes};
use crate::config::{JwtAlgorithm, JwtConfig, Scope};

/// Shortest HS256 secret accepted: RFC 7518 wants at least the hash's size.
const MIN_HS256_SECRET: usize = 32;

/// A configured verifier.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    required: Required,
    /// Longest validity accepted (`auth.jwt.max_lifetime`) and the clock skew allowed, in seconds.
    max_lifetime: u64,
    leeway: u64,
    tier: Arc<str>,
}

/// Claims a token must carry because they are configured. jsonwebtoken checks
/// `aud` and `iss` only when a token has them (and skips one it cannot read),
/// so leaving them out would pass.
struct Required {
    audience: bool,
    issuer: bool,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    /// Checked by jsonwebtoken (required); read again for the lifetime.
    #[serde(default)]
    exp: Option<serde_json::Value>,
    #[serde(default)]
    iat: Option<serde_json::Value>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    #[serde(default)]
    iss: Option<serde_json::Value>,
    #[serde(default)]
    scope: Option<ScopeClaim>,
    #[serde(default)]
    scp: Option<ScopeClaim>,
}

/// OAuth writes scopes as one space-separated string; some issuers use an array.
#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeClaim {
    Text(String),
    List(Vec<String>),
}

impl JwtVerifier {
    /// None when JWTs are off; errors name the key and what is wrong.
    pub fn new(cfg: &JwtConfig) -> Result<Option<Self>, String> {
        if cfg.max_lifetime.is_zero() {
            return Err("auth.jwt.max_lifetime = \"0s\": must be greater than zero".into());
        }
        let (alg, key) = match cfg.algorithm {
            JwtAlgorithm::Off => return Ok(None),
            JwtAlgorithm::HS256 => {
                let secret = cfg.secret.expose();
                if secret.len() < MIN_HS256_SECRET {
                    return Err(format!(
                        "auth.jwt.secret must hold at least {MIN_HS256_SECRET} bytes for HS256 (it holds {})",
                        secret.len()
                    ));
                }
                (Algorithm::HS256, DecodingKey::from_secret(secret.as_bytes()))
            }
            JwtAlgorithm::RS256 => {
                let path = &cfg.public_key_file;
                if path.is_empty() {
                    return Err("auth.jwt.public_key_file must name a PEM file for RS256".into());
                }
                let pem = std::fs::read(path).map_err(|e| format!("auth.jwt.public_key_file = {path:?}: {e}"))?;
                let key = DecodingKey::from_rsa_pem(&pem)
                    .map_err(|e| format!("auth.jwt.public_key_file = {path:?} is not an RSA public key in PEM: {e}"))?;
                (Algorithm::RS256, key)
            }
        };
        // Only the configured algorithm: a token cannot pick a weaker one (or HS256 keyed with the public key).
        let mut validation = Validation::new(alg);
        validation.leeway = cfg.leeway.as_secs();
        validation.set_required_spec_claims(&["exp", "sub"]);
        if cfg.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[&cfg.audience]);
        }
        if !cfg.issuer.is_empty() {
            validation.set_issuer(&[&cfg.issuer]);
        }
        validation.validate_nbf = true;
        let required = Required { audience: !cfg.audience.is_empty(), issuer: !cfg.issuer.is_empty() };
        Ok(Some(JwtVerifier {
            key,
            validation,
            required,
            max_lifetime: cfg.max_lifetime.as_secs(),
            leeway: cfg.leeway.as_secs(),
            tier: cfg.tier.as_str().into(),
        }))
    }

    /// Checks a token; the error says what was wrong with it.
    pub fn verify(&self, token: &str) -> Result<Principal, String> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| describe(e.kind()))?;
        let claims = data.claims;
        self.required.check(&claims)?;
        let time = |claim: &str, v: &Option<serde_json::Value>| match v {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(t) if t >= 0.0 => Ok(Some(t)),
                _ => Err(format!("the `{claim}` claim is malformed")),
            },
        };
        let exp = time("exp", &claims.exp)?.ok_or("the `exp` claim is missing")?;
        let iat = time("iat", &claims.iat)?;
        if let Some(why) =
            lifetime_refusal(exp, iat, jsonwebtoken::get_current_timestamp(), self.max_lifetime, self.leeway)
        {
            return Err(why);
        }
        let sub =
            claims.sub.filter(|s| !s.is_empty() && s.len() <= 256).ok_or("the `sub` claim is empty or too long")?;
        let mut scopes = Scopes::default();
        for claim in [claims.scope, claims.scp].into_iter().flatten() {
            let names: Vec<String> = match claim {
                ScopeClaim::Text(s) => s.split_whitespace().map(str::to_string).collect(),
                ScopeClaim::List(v) => v,
            };
            // Scopes meant for other services are ignored, not an error.
            names.iter().filter_map(|n| Scope::parse(n)).for_each(|s| scopes.insert(s));
        }
        Ok(Principal { client: format!("jwt:{sub}").into(), method: Method::Jwt, scopes, tier: self.tier.clone() })
    }
}

impl Required {
    /// Names every required claim that is missing or not of its type, in one message.
    fn check(&self, claims: &Claims) -> Result<(), String> {
        let mut problems = Vec::new();
        let is_text = |v: &serde_json::Value| v.as_str().is_some();
        if self.audience {
            // A string, or a non-empty array of strings (RFC 7519, 4.1.3).
            let aud = claims.aud.as_ref().map(|v| match v.as_array() {
                Some(list) => !list.is_empty() && list.iter().all(is_text),
                None => is_text(v),
            });
            problems.extend(shape_problem("aud", "audience", aud));
        }
        if self.issuer {
            problems.extend(shape_problem("iss", "issuer", claims.iss.as_ref().map(is_text)));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// What is wrong with a required claim: absent (`None`) or of the wrong type (`Some(false)`).
fn shape_problem(claim: &str, what: &str, well_formed: Option<bool>) -> Option<String> {
    match well_formed {
        None => Some(format!("the `{claim}` ({what}) claim, which this gateway requires, is missing")),
        Some(false) => Some(format!("the `{claim}` ({what}) claim, which this gateway requires, is malformed")),
        Some(true) => None,
    }
}

/// Why a token valid until `exp`, issued at `iat` (when it says), lives longer
/// than `max` seconds, seen at `now`. Counted from `iat`, and from `now` too:
/// an `iat` in the future, or none, cannot stretch a token's life. The skew
/// `leeway` applies to `now` only, since `iat` and `exp` come from one clock.
fn lifetime_refusal(exp: f64, iat: Option<f64>, now: u64, max: u64, leeway: u64) -> Option<String> {
    let limit = humantime::format_duration(std::time::Duration::from_secs(max));
    let span = |secs: f64| humantime::format_duration(std::time::Duration::from_secs(secs.round() as u64));
    if let Some(iat) = iat.filter(|iat| exp - iat > max as f64) {
        return Some(format!(
            "the token's lifetime, {} from `iat` to `exp`, is longer than the {limit} this gateway accepts (auth.jwt.max_lifetime)",
            span(exp - iat)
        ));
    }
    let left = exp - now as f64;
    (left > (max + leeway) as f64).then(|| {
        format!(
            "the token is valid for another {}, longer than the {limit} lifetime this gateway accepts (auth.jwt.max_lifetime)",
            span(left)
        )
    })
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidAudience => "the token's audience (aud) is not this gateway".into(),
        ErrorKind::InvalidIssuer => "the token's issuer (iss) is not trusted".into(),
        ErrorKind::InvalidSignature => "the signature does not verify".into(),
        ErrorKind::InvalidAlgorithm => "the token's algorithm is not the configured one".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the `{c}` claim is missing"),
        ErrorKind::InvalidClaimFormat(c) => format!("the `{c}` claim is malformed"),
        _ => "the token is malformed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use std::time::Duration;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn cfg() -> JwtConfig {
        JwtConfig {
            algorithm: JwtAlgorithm::HS256,
            secret: SECRET.into(),
            public_key_file: String::new(),
            audience: "order-gateway".into(),
            issuer: "https://idp.example".into(),
            leeway: Duration::from_secs(0),
            tier: "premium".into(),
            ..crate::config::Config::defaults().auth.jwt
        }
    }

    fn token(claims: serde_json::Value, secret: &str) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn valid_token_maps_scopes() {
        let v = JwtVerifier::new(&cfg()).unwrap().unwrap();
        let t = token(
            serde_json::json!({"sub": "agent-7", "aud": "order-gateway", "iss": "https://idp.example",
                "exp": now() + 60, "scope": "orders:read analytics:read other:thing"}),
            SECRET,
        );
        let p = v.verify(&t).unwrap();
        assert_eq!(&*p.client, "jwt:agent-7");
        assert_eq!(&*p.tier, "premium");
        assert!(p.scopes.contains(Scope::OrdersRead) && p.scopes.contains(Scope::AnalyticsRead));
        assert!(!p.scopes.contains(Scope::OrdersPii));
        let t = token(
            serde_json::json!({"sub": "s", "aud": "order-gateway", "iss": "https://idp.example", "exp": now() + 60, "scp": ["admin"]}),
            SECRET,
        );
        assert!(v.verify(&t).unwrap().scopes.contains(Scope::Admin));
    }

    #[test]
    fn expired_wrong_audience_wrong_key_are_refused_with_reasons() {
        let v = JwtVerifier::new(&cfg()).unwrap().unwrap();
        let base =
            serde_json::json!({"sub": "a", "aud": "order-gateway", "iss": "https://idp.example", "exp": now() + 60});
        let mut expired = base.clone();
        expired["exp"] = (now() - 10).into();
        assert!(v.verify(&token(expired, SECRET)).unwrap_err().contains("expired"));
        let mut aud = base.clone();
        aud["aud"] = "someone-else".into();
        assert!(v.verify(&token(aud, SECRET)).unwrap_err().contains("audience"));
        let mut iss = base.clone();
        iss["iss"] = "https://evil".into();
        assert!(v.verify(&token(iss, SECRET)).unwrap_err().contains("issuer"));
        assert!(v
            .verify(&token(base.clone(), "another-secret-of-32-bytes-length!!"))
            .unwrap_err()
            .contains("signature"));
        let mut no_exp = base;
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(v.verify(&token(no_exp, SECRET)).unwrap_err().contains("exp"));
    }

    #[test]
    fn weak_or_missing_keys_are_configuration_errors() {
        let mut c = cfg();
        c.secret = "short".into();
        assert!(JwtVerifier::new(&c).err().unwrap().contains("at least 32 bytes"));
        c.algorithm = JwtAlgorithm::RS256;
        assert!(JwtVerifier::new(&c).err().unwrap().contains("public_key_file"));
        c.public_key_file = "/nonexistent/key.pem".into();
        assert!(JwtVerifier::new(&c).err().unwrap().contains("/nonexistent/key.pem"));
    }

    #[test]
    fn configured_audience_and_issuer_are_required_not_just_checked_when_present() {
        let v = JwtVerifier::new(&cfg()).unwrap().unwrap();
        let full =
            serde_json::json!({"sub": "a", "aud": "order-gateway", "iss": "https://idp.example", "exp": now() + 60});
        assert!(v.verify(&token(full.clone(), SECRET)).is_ok());
        for (claim, named) in [("aud", "audience"), ("iss", "issuer")] {
            let mut without = full.clone();
            without.as_object_mut().unwrap().remove(claim);
            let e = v.verify(&token(without, SECRET)).unwrap_err();
            assert!(e.contains(&format!("`{claim}`")) && e.contains(named) && e.contains("missing"), "{claim}: {e}");
        }
        let only_sub_exp = token(serde_json::json!({"sub": "a", "exp": now() + 60, "scope": "admin"}), SECRET);
        let e = v.verify(&only_sub_exp).unwrap_err();
        assert!(e.contains("`aud`") && e.contains("`iss`"), "both are named: {e}");
        // Claims jsonwebtoken cannot read (and so does not check) do not count as present.
        for (claim, value) in [
            ("aud", serde_json::json!(7)),
            ("aud", serde_json::json!([1])),
            ("iss", serde_json::json!(["https://idp.example"])),
        ] {
            let mut odd = full.clone();
            odd[claim] = value.clone();
            let e = v.verify(&token(odd, SECRET)).unwrap_err();
            assert!(e.contains(&format!("`{claim}`")) && e.contains("malformed"), "{claim} = {value}: {e}");
        }
        let mut several = full.clone();
        several["aud"] = serde_json::json!(["another-service", "order-gateway"]);
        assert!(v.verify(&token(several, SECRET)).is_ok(), "one audience among several");
        // Neither configured: neither required.
        let mut open = cfg();
        open.audience.clear();
        open.issuer.clear();
        let v = JwtVerifier::new(&open).unwrap().unwrap();
        assert!(v.verify(&only_sub_exp).is_ok());
    }

    #[test]
    fn tokens_living_longer_than_a_day_are_refused_by_default() {
        let v = JwtVerifier::new(&cfg()).unwrap().unwrap();
        let day = 86_400;
        let claims = |iat: Option<u64>, exp: u64| {
            let mut c =
                serde_json::json!({"sub": "a", "aud": "order-gateway", "iss": "https://idp.example", "exp": exp});
            if let Some(iat) = iat {
                c["iat"] = iat.into();
            }
            token(c, SECRET)
        };
        let t = now();
        assert!(v.verify(&claims(Some(t), t + day)).is_ok(), "exactly the limit");
        assert!(v.verify(&claims(None, t + 3600)).is_ok());
        for (what, iat, exp) in [
            ("a second too long", Some(t), t + day + 1),
            ("issued long ago, valid a little longer", Some(t - 10 * day), t + 60),
            ("no iat, expires in a month", None, t + 30 * day),
            ("iat in the future", Some(t + 29 * day), t + 30 * day),
        ] {
            let e = v.verify(&claims(iat, exp)).unwrap_err();
            assert!(e.contains("lifetime") && e.contains("auth.jwt.max_lifetime"), "{what}: {e}");
        }
    }

    #[test]
    fn max_lifetime_is_configurable_and_a_malformed_iat_is_refused() {
        let mut c = cfg();
        c.max_lifetime = Duration::from_secs(3600);
        let v = JwtVerifier::new(&c).unwrap().unwrap();
        let base = serde_json::json!({"sub": "a", "aud": "order-gateway", "iss": "https://idp.example"});
        let with = |extra: serde_json::Value| {
            let mut claims = base.clone();
            claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            v.verify(&token(claims, SECRET))
        };
        assert!(with(serde_json::json!({"iat": now(), "exp": now() + 3600})).is_ok());
        let e = with(serde_json::json!({"iat": now(), "exp": now() + 7200})).unwrap_err();
        assert!(e.contains("2h") && e.contains("1h"), "{e}");
        let e = with(serde_json::json!({"iat": "yesterday", "exp": now() + 60})).unwrap_err();
        assert!(e.contains("`iat`") && e.contains("malformed"), "{e}");
        c.max_lifetime = Duration::ZERO;
        assert!(JwtVerifier::new(&c).err().unwrap().contains("auth.jwt.max_lifetime"));
    }

    proptest::proptest! {
        /// Whatever the claims say, a token accepted at `now` is valid no
        /// longer than `max` (plus the skew) from now, nor from its `iat`.
        #[test]
        fn an_accepted_token_never_outlives_max_lifetime(
            now in 1_000_000u64..4_000_000_000,
            exp_after in -100_000i64..10_000_000,
            iat_before in proptest::option::of(-10_000_000i64..10_000_000),
            max in 1u64..5_000_000,
            leeway in 0u64..120,
        ) {
            let exp = (now as i64 + exp_after) as f64;
            let iat = iat_before.map(|b| (now as i64 - b) as f64);
            if lifetime_refusal(exp, iat, now, max, leeway).is_none() {
                proptest::prop_assert!(exp - now as f64 <= (max + leeway) as f64);
                if let Some(iat) = iat {
                    proptest::prop_assert!(exp - iat <= max as f64);
                }
            }
        }
    }
}
