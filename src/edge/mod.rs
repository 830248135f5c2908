//! Edge protection, in the order a request meets it: who is calling
//! ([`auth`], [`jwt`]), how much it may spend ([`rate_limit`]), and whether
//! its credential allows the route ([`policy`]). Everything here is built from
//! configuration as one [`Edge`] value that a reload swaps atomically.

pub mod auth;
pub mod jwt;
pub mod policy;
pub mod principal;
pub mod rate_limit;

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;

use crate::config::{Config, Scope};
use crate::route::Route;
use crate::telemetry::names;
pub use auth::{Authenticator, Method, Principal, Scopes};
pub use policy::{Access, Cost};
pub use rate_limit::{Decision, RateInfo, RateLimits};

/// Why the edge refused a request. Converted to problem+json in one place
/// (`api::problem`), like every other error a client sees.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EdgeError {
    /// No credential, or one that is not valid (401).
    #[error("{detail}")]
    Unauthorized { detail: String, invalid_token: bool },
    /// A valid credential without the scope the route needs (403).
    #[error("{0}")]
    Forbidden(String),
    /// The client's (or everyone's, `global`) rate limit is spent (429).
    #[error("rate limit spent")]
    RateLimited { info: RateInfo, global: bool },
}

/// The compiled edge configuration.
pub struct Edge {
    pub auth: Authenticator,
    pub limits: Arc<RateLimits>,
    policy: policy::Policy,
}

/// A request let through, with what the response should say about limits.
#[derive(Debug)]
pub struct Admitted {
    pub principal: Option<Principal>,
    pub rate: Option<RateInfo>,
}

impl Admitted {
    /// Whether the caller holds the `admin` scope.
    pub fn is_admin(&self) -> bool {
        self.principal.as_ref().is_some_and(|p| p.scopes.contains(Scope::Admin))
    }

    /// Whether order responses may carry addresses, e-mail and phone.
    pub fn sees_pii(&self) -> bool {
        self.principal.as_ref().is_some_and(|p| p.scopes.contains(Scope::OrdersPii))
    }
}

impl Edge {
    /// Builds the edge from `cfg`. When `previous` has the same rate-limit
    /// settings its buckets are kept, so a reload that changes only keys does
    /// not hand every client a fresh burst.
    pub fn new(cfg: &Config, previous: Option<&Edge>) -> Result<Edge, String> {
        let auth = Authenticator::new(&cfg.auth)?;
        let limits = match previous {
            Some(p) if p.limits.config() == &cfg.rate_limit => p.limits.clone(),
            _ => Arc::new(RateLimits::new(&cfg.rate_limit)?),
        };
        for (i, k) in cfg.auth.keys.iter().enumerate() {
            if !k.tier.is_empty() && !cfg.rate_limit.tiers.contains_key(&k.tier) {
                return Err(format!("auth.keys[{i}].tier = {:?} is not a tier in rate_limit.tiers", k.tier));
            }
        }
        for (key, tier) in [("auth.jwt.tier", &cfg.auth.jwt.tier), ("auth.mesh.tier", &cfg.auth.mesh.tier)] {
            if !tier.is_empty() && !cfg.rate_limit.tiers.contains_key(tier) {
                return Err(format!("{key} = {tier:?} is not a tier in rate_limit.tiers"));
            }
        }
        Ok(Edge { auth, limits, policy: policy::Policy::new(&cfg.auth, &cfg.rate_limit.costs) })
    }

    /// Authenticates, rate-limits and authorises one request.
    pub fn admit(&self, route: Route, headers: &HeaderMap, peer: IpAddr) -> Result<Admitted, EdgeError> {
        let (access, cost) = self.policy.of(route);
        if access == Access::Public && cost == 0 {
            // Probes and scrapes: never charged, never refused here. A
            // credential sent along is still read (a bad one is ignored), so
            // that `/readyz` can show its details to an admin.
            let sent = headers.contains_key(http::header::AUTHORIZATION) || headers.contains_key(&auth::X_API_KEY);
            let principal = if sent { self.auth.authenticate(headers, peer).ok() } else { None };
            return Ok(Admitted { principal, rate: None });
        }
        let principal = match self.auth.authenticate(headers, peer) {
            Ok(p) => p,
            Err(e) => {
                metrics::counter!(names::AUTH_FAILURES, "reason" => "invalid_credential").increment(1);
                // Wrong credentials spend the peer's anonymous bucket: guessing keys is throttled.
                let client = rate_limit::peer_key(peer);
                let tier = self.limits.tier_name("", true);
                if let Decision::Limited(info) | Decision::GlobalLimited(info) = self.limits.check(&client, tier, 1) {
                    return Err(limited(info, false));
                }
                return Err(EdgeError::Unauthorized { detail: e.to_string(), invalid_token: true });
            }
        };
        let anonymous = principal.method == Method::Anonymous && principal.scopes == Scopes::default();
        let tier = self.limits.tier_name(&principal.tier, anonymous);
        let rate = match self.limits.check(&principal.client, tier, cost.max(1)) {
            Decision::Allowed(info) => info,
            Decision::Limited(info) => {
                metrics::counter!(names::RATE_LIMITED, "scope" => "client").increment(1);
                return Err(limited(info, false));
            }
            Decision::GlobalLimited(info) => {
                metrics::counter!(names::RATE_LIMITED, "scope" => "global").increment(1);
                return Err(limited(info, true));
            }
        };
        if let Access::Scope(needed) = access {
            if !principal.scopes.contains(needed) {
                if anonymous {
                    metrics::counter!(names::AUTH_FAILURES, "reason" => "missing_credential").increment(1);
                    return Err(EdgeError::Unauthorized {
                        detail: format!(
                            "this endpoint needs a credential with scope {}: send `Authorization: Bearer <key or token>` or `x-api-key: <key>`",
                            needed.as_str()
                        ),
                        invalid_token: false,
                    });
                }
                metrics::counter!(names::AUTH_FAILURES, "reason" => "missing_scope").increment(1);
                return Err(EdgeError::Forbidden(format!(
                    "the credential of {} lacks the scope {} (it has: {})",
                    principal.client,
                    needed.as_str(),
                    principal.scopes.names().join(", ")
                )));
            }
        }
        Ok(Admitted { principal: Some(principal), rate })
    }
}

fn limited(info: RateInfo, global: bool) -> EdgeError {
    EdgeError::RateLimited { info, global }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TierConfig;

    #[test]
    fn one_ipv6_slash_64_spends_one_anonymous_bucket() {
        let mut cfg = Config::defaults();
        cfg.rate_limit.tiers.insert("anonymous".into(), TierConfig { rate: 1, burst: 10 });
        let edge = Edge::new(&cfg, None).unwrap();
        let mut wrong_key = HeaderMap::new();
        wrong_key.insert("x-api-key", "ogw_not_a_key".parse().unwrap());
        let none = HeaderMap::new();
        let from = |ip: &str, h: &HeaderMap| edge.admit(Route::Order, h, ip.parse().unwrap());
        for i in 0..10 {
            // Wrong keys and no key at all, each from another address of the same /64.
            let h = if i % 2 == 0 { &wrong_key } else { &none };
            let r = from(&format!("2001:db8:0:1::{i:x}"), h);
            assert!(matches!(r, Err(EdgeError::Unauthorized { .. })), "{i}: {r:?}");
        }
        let r = from("2001:db8:0:1:ffff:ffff:ffff:ffff", &wrong_key);
        assert!(matches!(r, Err(EdgeError::RateLimited { global: false, .. })), "the same /64: {r:?}");
        let r = from("2001:db8:0:1::77", &none);
        assert!(matches!(r, Err(EdgeError::RateLimited { global: false, .. })), "the same /64: {r:?}");
        let r = from("2001:db8:0:2::1", &wrong_key);
        assert!(matches!(r, Err(EdgeError::Unauthorized { .. })), "another /64 has its own bucket: {r:?}");
        let r = from("192.0.2.1", &wrong_key);
        assert!(matches!(r, Err(EdgeError::Unauthorized { .. })), "{r:?}");
    }
}
