//! Who is calling: API keys (stored as SHA-256 hashes, compared in constant
//! time), JWT bearer tokens, and identities asserted by a trusted mesh sidecar.
//! Pure logic over headers and the peer address; no I/O after construction.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use ipnet::IpNet;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::jwt::JwtVerifier;
pub use super::principal::{Method, Principal, Scopes};
use crate::config::{AuthConfig, AuthMode};

/// Why a credential was refused (401). The text goes to the client, so it
/// names what is wrong without echoing the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the API key is not known")]
    UnknownKey,
    #[error("the Authorization header must be `Bearer <key or token>`")]
    BadScheme,
    #[error("the bearer token is not valid: {0}")]
    BadToken(String),
}

struct Mesh {
    header: http::HeaderName,
    xfcc: bool,
    trusted: Vec<IpNet>,
    default_scopes: Scopes,
    default_tier: Arc<str>,
    identities: Vec<(String, Scopes, Arc<str>)>,
}

/// The compiled `[auth]` section.
pub struct Authenticator {
    mode: AuthMode,
    /// By the SHA-256 of the key.
    keys: std::collections::HashMap<[u8; 32], Principal>,
    jwt: Option<JwtVerifier>,
    mesh: Option<Mesh>,
}

/// `sha256:<hex>` of a key: the only form in which keys are stored.
pub fn hash_key(key: &str) -> String {
    let d = Sha256::digest(key.as_bytes());
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Parses `sha256:<64 hex digits>`.
pub fn parse_hash(s: &str) -> Result<[u8; 32], String> {
    let hex = s.strip_prefix("sha256:").ok_or_else(|| "must start with \"sha256:\"".to_string())?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("must be \"sha256:\" followed by 64 hex digits (order-gateway hash-key prints it)".into());
    }
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(chunk).expect("ASCII hex");
        out[i] = u8::from_str_radix(pair, 16).expect("checked hex");
    }
    Ok(out)
}

/// Parses a peer address or network: "10.0.0.0/8", "127.0.0.1" (a /32).
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| "is not an IP address or CIDR network (e.g. \"10.0.0.0/8\")".to_string())
}

impl Authenticator {
    /// Compiles the section; errors name the key and the bad value. Reads the
    /// JWT public key file, if any.
    pub fn new(cfg: &AuthConfig) -> Result<Self, String> {
        let mut keys = std::collections::HashMap::with_capacity(cfg.keys.len());
        for (i, k) in cfg.keys.iter().enumerate() {
            let digest = parse_hash(&k.hash).map_err(|e| format!("auth.keys[{i}].hash ({:?}) {e}", k.name))?;
            let principal = Principal {
                client: format!("key:{}", k.name).into(),
                method: Method::ApiKey,
                scopes: k.scopes.iter().copied().collect(),
                tier: k.tier.as_str().into(),
            };
            if keys.insert(digest, principal).is_some() {
                return Err(format!(
                    "auth.keys[{i}].hash ({:?}) is the hash of another key too: one key, one entry",
                    k.name
                ));
            }
        }
        let jwt = JwtVerifier::new(&cfg.jwt)?;
        let mesh = if cfg.mesh.identity_header.is_empty() {
            None
        } else {
            let header = http::HeaderName::from_bytes(cfg.mesh.identity_header.to_ascii_lowercase().as_bytes())
                .map_err(|_| {
                    format!("auth.mesh.identity_header = {:?} is not a header name", cfg.mesh.identity_header)
                })?;
            let mut trusted = Vec::new();
            for (i, p) in cfg.mesh.trusted_peers.iter().enumerate() {
                trusted.push(parse_net(p).map_err(|e| format!("auth.mesh.trusted_peers[{i}] = {p:?} {e}"))?);
            }
            Some(Mesh {
                xfcc: header.as_str() == "x-forwarded-client-cert",
                header,
                trusted,
                default_scopes: cfg.mesh.scopes.iter().copied().collect(),
                default_tier: cfg.mesh.tier.as_str().into(),
                identities: cfg
                    .mesh
                    .identities
                    .iter()
                    .map(|m| (m.id.clone(), m.scopes.iter().copied().collect(), m.tier.as_str().into()))
                    .collect(),
            })
        };
        Ok(Authenticator { mode: cfg.mode, keys, jwt, mesh })
    }

    /// Identifies the caller. `Ok` with an anonymous principal (keyed by peer
    /// address, no scopes) when no credential came; `Err` when one came and
    /// is wrong: a bad credential is never downgraded to anonymous.
    pub fn authenticate(&self, headers: &HeaderMap, peer: IpAddr) -> Result<Principal, AuthError> {
        if self.mode == AuthMode::Disabled {
            return Ok(Principal { scopes: Scopes::ALL, ..anonymous(peer) });
        }
        if let Some(secret) = credential(headers)? {
            if let Some(jwt) = &self.jwt {
                if looks_like_jwt(secret) {
                    return jwt.verify(secret).map_err(AuthError::BadToken);
                }
            }
            return self.api_key(secret);
        }
        if let Some(mesh) = &self.mesh {
            if let Some(p) = mesh.identify(headers, peer) {
                return Ok(p);
            }
        }
        Ok(anonymous(peer))
    }

    /// Finds the key by its SHA-256. The map lookup's timing can only tell an
    /// attacker about digests, which say nothing about keys (preimage
    /// resistance); the final comparison is in constant time. One lookup
    /// whatever the number of keys.
    fn api_key(&self, secret: &str) -> Result<Principal, AuthError> {
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        match self.keys.get_key_value(&digest) {
            Some((stored, p)) if bool::from(stored.ct_eq(&digest)) => Ok(p.clone()),
            _ => Err(AuthError::UnknownKey),
        }
    }
}

fn anonymous(peer: IpAddr) -> Principal {
    Principal {
        client: format!("peer:{peer}").into(),
        method: Method::Anonymous,
        scopes: Scopes::default(),
        tier: Arc::from(""),
    }
}

/// The secret from `Authorization: Bearer …` or `x-api-key`; None when neither
/// header is present.
fn credential(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| AuthError::BadScheme)?;
        let (scheme, rest) = v.split_once(' ').ok_or(AuthError::BadScheme)?;
        let secret = rest.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || secret.is_empty() {
            return Err(AuthError::BadScheme);
        }
        return Ok(Some(secret));
    }
    match headers.get("x-api-key") {
        Some(v) => {
            let s = v.to_str().map_err(|_| AuthError::UnknownKey)?.trim();
            if s.is_empty() {
                Err(AuthError::UnknownKey)
            } else {
                Ok(Some(s))
            }
        }
        None => Ok(None),
    }
}

/// A compact JWS: three base64url segments, the first a JSON object (`eyJ`).
fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.bytes().filter(|b| *b == b'.').count() == 2
}

impl Mesh {
    fn identify(&self, headers: &HeaderMap, peer: IpAddr) -> Option<Principal> {
        let raw = headers.get(&self.header)?.to_str().ok()?;
        if !self.trusted.iter().any(|n| n.contains(&peer)) {
            // Anyone can send the header; only the sidecar's word counts.
            metrics::counter!(crate::telemetry::names::AUTH_UNTRUSTED_IDENTITY).increment(1);
            return None;
        }
        let id = if self.xfcc { spiffe_id(raw)? } else { raw.trim() };
        if id.is_empty() || id.len() > 512 {
            return None;
        }
        let (scopes, tier) = self
            .identities
            .iter()
            .find(|(i, _, _)| i == id)
            .map(|(_, s, t)| (*s, t.clone()))
            .unwrap_or((self.default_scopes, self.default_tier.clone()));
        Some(Principal { client: format!("mesh:{id}").into(), method: Method::Mesh, scopes, tier })
    }
}

/// The `URI=` element of the last (nearest) hop of an
/// `x-forwarded-client-cert` header (Envoy's format).
pub fn spiffe_id(xfcc: &str) -> Option<&str> {
    let last = xfcc.rsplit(',').next()?;
    last.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim().eq_ignore_ascii_case("uri").then(|| v.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiKeyConfig, Config, Scope};

    fn cfg() -> AuthConfig {
        let mut c = Config::defaults().auth;
        c.keys = vec![
            ApiKeyConfig {
                name: "crm".into(),
                hash: hash_key("k-crm"),
                scopes: vec![Scope::OrdersRead],
                tier: "".into(),
            },
            ApiKeyConfig {
                name: "ops".into(),
                hash: hash_key("k-ops"),
                scopes: vec![Scope::Admin, Scope::OrdersPii],
                tier: "premium".into(),
            },
        ];
        c.mesh.identity_header = "x-forwarded-client-cert".into();
        c.mesh.trusted_peers = vec!["127.0.0.2".into(), "10.1.0.0/16".into()];
        c
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn keys_by_either_header() {
        let a = Authenticator::new(&cfg()).unwrap();
        let p = a.authenticate(&headers(&[("authorization", "Bearer k-crm")]), PEER).unwrap();
        assert_eq!(&*p.client, "key:crm");
        assert!(p.scopes.contains(Scope::OrdersRead) && !p.scopes.contains(Scope::OrdersPii));
        let p = a.authenticate(&headers(&[("x-api-key", "k-ops")]), PEER).unwrap();
        assert_eq!(&*p.tier, "premium");
        assert!(p.scopes.contains(Scope::Admin));
        let p = a.authenticate(&headers(&[("authorization", "bearer  k-ops ")]), PEER).unwrap();
        assert_eq!(&*p.client, "key:ops");
    }

    #[test]
    fn wrong_or_malformed_credentials_are_refused_not_downgraded() {
        let a = Authenticator::new(&cfg()).unwrap();
        assert_eq!(a.authenticate(&headers(&[("x-api-key", "k-crm2")]), PEER).unwrap_err(), AuthError::UnknownKey);
        assert_eq!(
            a.authenticate(&headers(&[("authorization", "Basic eDp5")]), PEER).unwrap_err(),
            AuthError::BadScheme
        );
        assert_eq!(a.authenticate(&headers(&[("authorization", "Bearer")]), PEER).unwrap_err(), AuthError::BadScheme);
        let p = a.authenticate(&HeaderMap::new(), PEER).unwrap();
        assert_eq!(p.method, Method::Anonymous);
        assert_eq!(p.scopes, Scopes::default());
        assert_eq!(&*p.client, "peer:127.0.0.1");
    }

    #[test]
    fn mesh_identity_only_from_trusted_peers() {
        let a = Authenticator::new(&cfg()).unwrap();
        let h = headers(&[("x-forwarded-client-cert", "By=spiffe://a;URI=spiffe://prod/ns/crm/sa/ui")]);
        let untrusted = a.authenticate(&h, PEER).unwrap();
        assert_eq!(untrusted.method, Method::Anonymous);
        let trusted = a.authenticate(&h, "127.0.0.2".parse().unwrap()).unwrap();
        assert_eq!(&*trusted.client, "mesh:spiffe://prod/ns/crm/sa/ui");
        assert!(trusted.scopes.contains(Scope::OrdersRead));
        let in_net = a.authenticate(&h, "10.1.200.3".parse().unwrap()).unwrap();
        assert_eq!(in_net.method, Method::Mesh);
    }

    #[test]
    fn disabled_mode_grants_everything() {
        let mut c = cfg();
        c.mode = AuthMode::Disabled;
        let p = Authenticator::new(&c).unwrap().authenticate(&HeaderMap::new(), PEER).unwrap();
        assert_eq!(p.scopes, Scopes::ALL);
    }

    #[test]
    fn hashes_round_trip_and_bad_ones_are_named() {
        let h = hash_key("abc");
        assert_eq!(h, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(parse_hash(&h).is_ok());
        assert!(parse_hash("md5:00").unwrap_err().contains("sha256:"));
        let mut c = cfg();
        c.keys[1].hash = "sha256:zz".into();
        let err = Authenticator::new(&c).err().unwrap();
        assert!(err.contains("auth.keys[1].hash") && err.contains("ops"), "{err}");
    }

    #[test]
    fn spiffe_from_xfcc() {
        assert_eq!(spiffe_id("Hash=abc;URI=spiffe://x/y"), Some("spiffe://x/y"));
        assert_eq!(spiffe_id("URI=spiffe://a,Hash=1;URI=\"spiffe://b\""), Some("spiffe://b"));
        assert_eq!(spiffe_id("Hash=abc"), None);
    }
}
