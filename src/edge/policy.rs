//! What each route demands: a scope (or nothing), and what it costs against
//! the caller's rate limit.

use crate::config::{AuthConfig, CostConfig, Scope};
use crate::route::Route;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    Scope(Scope),
}

/// Cost units of one request; 0 for probes and scrapes, which are never limited.
pub type Cost = u32;

/// The route table's access rules, compiled from configuration.
pub struct Policy {
    public_health: bool,
    public_metrics: bool,
    public_docs: bool,
    costs: CostConfig,
}

impl Policy {
    pub fn new(auth: &AuthConfig, costs: &CostConfig) -> Self {
        Policy {
            public_health: auth.public_health,
            public_metrics: auth.public_metrics,
            public_docs: auth.public_docs,
            costs: costs.clone(),
        }
    }

    /// The rule of one route.
    pub fn of(&self, route: Route) -> (Access, Cost) {
        let open_or_admin = |public: bool| if public { Access::Public } else { Access::Scope(Scope::Admin) };
        let c = &self.costs;
        match route {
            Route::Healthz | Route::Readyz => {
                (open_or_admin(self.public_health), if self.public_health { 0 } else { c.admin })
            }
            Route::Metrics => (open_or_admin(self.public_metrics), if self.public_metrics { 0 } else { c.admin }),
            Route::OpenApi | Route::DocsRoot | Route::DocsIndex | Route::Docs | Route::Redoc | Route::RedocFile => {
                (if self.public_docs { Access::Public } else { Access::Scope(Scope::OrdersRead) }, c.docs)
            }
            // A live stream costs its kind of read once, when it opens.
            Route::Order | Route::OrderByNumber | Route::OrderEvents => (Access::Scope(Scope::OrdersRead), c.lookup),
            Route::OrdersBatchGet => (Access::Scope(Scope::OrdersRead), c.batch_get),
            Route::Orders | Route::CustomerOrders | Route::CustomerOrderEvents => {
                (Access::Scope(Scope::OrdersRead), c.search)
            }
            Route::Kpis | Route::Timeseries | Route::TopSkus | Route::StatusFunnel => {
                (Access::Scope(Scope::AnalyticsRead), c.analytics)
            }
            Route::AdminCache
            | Route::AdminCacheOrder
            | Route::AdminStream
            | Route::AdminConfig
            | Route::AdminReload => (Access::Scope(Scope::Admin), c.admin),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn every_route_has_a_rule_and_data_routes_need_scopes() {
        let c = Config::defaults();
        let p = Policy::new(&c.auth, &c.rate_limit.costs);
        assert_eq!(p.of(Route::Healthz), (Access::Public, 0));
        assert_eq!(p.of(Route::Metrics), (Access::Public, 0));
        assert_eq!(p.of(Route::Order).0, Access::Scope(Scope::OrdersRead));
        assert_eq!(p.of(Route::Kpis).0, Access::Scope(Scope::AnalyticsRead));
        assert_eq!(p.of(Route::AdminReload).0, Access::Scope(Scope::Admin));
        assert!(p.of(Route::Orders).1 > p.of(Route::Order).1, "a search costs more than a lookup");
        let mut closed = c.auth.clone();
        closed.public_metrics = false;
        let p = Policy::new(&closed, &c.rate_limit.costs);
        assert_eq!(p.of(Route::Metrics).0, Access::Scope(Scope::Admin));
    }
}
