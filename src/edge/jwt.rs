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
        Ok(Some(JwtVerifier { key, validation, required, tier: cfg.tier.as_str().into() }))
    }

    /// Checks a token; the error says what was wrong with it.
    pub fn verify(&self, token: &str) -> Result<Principal, String> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| describe(e.kind()))?;
        let claims = data.claims;
        self.required.check(&claims)?;
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
}
