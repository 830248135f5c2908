//! JWT bearer tokens (HS256 or RS256): signature, `exp` (required), `nbf`,
//! and `aud` and `iss` (required when configured) are checked by
//! jsonwebtoken; the `scope` claim becomes scopes.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, Validation};
use serde::Deserialize;

use super::principal::{Method, Principal, Scopes};
use crate::config::{JwtAlgorithm, JwtConfig, Scope};

/// Shortest HS256 secret accepted: RFC 7518 wants at least the hash's size.
const MIN_HS256_SECRET: usize = 32;
/// Smallest RS256 modulus accepted: RFC 7518 (3.3) and NIST SP 800-131A.
const MIN_RSA_BITS: usize = 2048;

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
                let not_public = |why: &dyn std::fmt::Display| {
                    format!("auth.jwt.public_key_file = {path:?} is not an RSA public key in PEM: {why}")
                };
                let key = DecodingKey::from_rsa_pem(&pem).map_err(|e| not_public(&e))?;
                // jsonwebtoken keeps the PKCS#1 `RSAPublicKey` (a private key, too, if given one).
                let bits = match key.kind() {
                    DecodingKeyKind::SecretOrDer(der) => rsa_modulus_bits(der),
                    DecodingKeyKind::RsaModulusExponent { .. } => None,
                }
                .ok_or_else(|| not_public(&"it holds no RSA public key (a private key, or a certificate chain?)"))?;
                if bits < MIN_RSA_BITS {
                    return Err(format!(
                        "auth.jwt.public_key_file = {path:?} is an RSA key of {bits} bits: RS256 needs at least {MIN_RSA_BITS}"
                    ));
                }
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

/// Bits in the modulus of a DER PKCS#1 `RSAPublicKey` (a SEQUENCE of the
/// INTEGERs n and e, nothing else); None when `der` is not one.
fn rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    let (key, rest) = der_element(der, 0x30)?;
    let (n, more) = der_element(key, 0x02)?;
    let (e, more) = der_element(more, 0x02)?;
    if !rest.is_empty() || !more.is_empty() || e.is_empty() {
        return None;
    }
    let n = &n[n.iter().take_while(|b| **b == 0).count()..];
    let top = n.first()?;
    Some(n.len() * 8 - top.leading_zeros() as usize)
}

/// The contents of the DER element at the start of `der` when its tag is
/// `tag`, and what follows it.
fn der_element(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    if t != tag {
        return None;
    }
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the low bits say how many length bytes follow.
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len, rest) = rest.split_at(n);
        (len.iter().fold(0usize, |acc, b| acc << 8 | usize::from(*b)), rest)
    };
    (rest.len() >= len).then(|| rest.split_at(len))
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

    /// A 1024-bit RSA public key (SubjectPublicKeyInfo): too small to trust.
    const RSA_1024_SPKI: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCgKBUvNQ85kkw7300+tG+0kScN
KZXMxuLSxrA3xRxqBkcdKTmSHZmZmauKh8O1uHb7E2a+z6O6VA7JggZvfv+kY0WX
HEY6M2n7MKhpXpPBoficGQuh0tcZbde7FTaSZkZywe6bj1Guvm+gKbsb+wgRzCpQ
7ZTxQJLcg5WzPdjhGwIDAQAB
-----END PUBLIC KEY-----
";
    /// The same key in PKCS#1 form.
    const RSA_1024_PKCS1: &str = "-----BEGIN RSA PUBLIC KEY-----
MIGJAoGBAKAoFS81DzmSTDvfTT60b7SRJw0plczG4tLGsDfFHGoGRx0pOZIdmZmZ
q4qHw7W4dvsTZr7Po7pUDsmCBm9+/6RjRZccRjozafswqGlek8Gh+JwZC6HS1xlt
17sVNpJmRnLB7puPUa6+b6Apuxv7CBHMKlDtlPFAktyDlbM92OEbAgMBAAE=
-----END RSA PUBLIC KEY-----
";

    fn temp_pem(pem: &str) -> String {
        let path = std::env::temp_dir().join(format!("ogw-jwt-{}.pem", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, pem).unwrap();
        path.to_str().unwrap().to_string()
    }

    #[test]
    fn rsa_keys_under_2048_bits_are_refused_naming_the_file_and_the_size() {
        let mut c = cfg();
        c.algorithm = JwtAlgorithm::RS256;
        for pem in [RSA_1024_SPKI, RSA_1024_PKCS1] {
            c.public_key_file = temp_pem(pem);
            let e = JwtVerifier::new(&c).err().expect("a 1024-bit key is refused");
            let _ = std::fs::remove_file(&c.public_key_file);
            assert!(e.contains(&c.public_key_file) && e.contains("1024 bits") && e.contains("2048"), "{e}");
        }
        c.public_key_file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt-rs256-public.pem").into();
        assert!(JwtVerifier::new(&c).is_ok(), "the 2048-bit fixture is accepted");
        // A private key is not a public key, whatever its size.
        c.public_key_file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt-rs256-private.pem").into();
        let e = JwtVerifier::new(&c).err().expect("a private key is refused");
        assert!(e.contains("not an RSA public key"), "{e}");
    }

    #[test]
    fn modulus_sizes_are_read_from_der() {
        // SEQUENCE { INTEGER n, INTEGER 65537 } with n of `bits` bits (a leading 0x00 when its top bit is set).
        let key = |bits: usize| {
            let mut n = vec![0xffu8; bits.div_ceil(8)];
            n[0] = 0xff >> (n.len() * 8 - bits);
            if n[0] & 0x80 != 0 {
                n.insert(0, 0);
            }
            let mut int = vec![0x02];
            int.extend(der_len(n.len()));
            int.extend(n);
            int.extend([0x02, 0x03, 0x01, 0x00, 0x01]);
            let mut seq = vec![0x30];
            seq.extend(der_len(int.len()));
            seq.extend(int);
            seq
        };
        for bits in [512, 1023, 1024, 2047, 2048, 3072, 4096] {
            assert_eq!(rsa_modulus_bits(&key(bits)), Some(bits));
        }
        let k = key(2048);
        assert_eq!(rsa_modulus_bits(&k[..k.len() - 1]), None, "truncated");
        assert_eq!(rsa_modulus_bits(&[k.as_slice(), &[0]].concat()), None, "trailing bytes");
        assert_eq!(rsa_modulus_bits(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None, "a length beyond the input");
        assert_eq!(rsa_modulus_bits(&[]), None);
    }

    fn der_len(len: usize) -> Vec<u8> {
        match len {
            0..=0x7f => vec![len as u8],
            0x80..=0xff => vec![0x81, len as u8],
            _ => vec![0x82, (len >> 8) as u8, len as u8],
        }
    }
}
