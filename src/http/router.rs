//! Route table: path templates to routes, and which methods each accepts.

use http::Method;

/// Every route the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    Metrics,
    Order,
    OrderByNumber,
    OrdersBatchGet,
    Orders,
    CustomerOrders,
    OpenApi,
    DocsRoot,
    DocsIndex,
    Docs,
    Kpis,
    Timeseries,
    TopSkus,
    StatusFunnel,
    AdminCache,
    AdminCacheOrder,
    AdminStream,
    AdminConfig,
    AdminReload,
}

impl Route {
    /// The path template: the `route` label of metrics and logs.
    pub fn template(self) -> &'static str {
        match self {
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
            Route::Order => "/v1/orders/{order_id}",
            Route::OrderByNumber => "/v1/orders/by-number/{order_number}",
            Route::OrdersBatchGet => "/v1/orders:batchGet",
            Route::Orders => "/v1/orders",
            Route::CustomerOrders => "/v1/customers/{customer_id}/orders",
            Route::OpenApi => "/openapi.json",
            Route::DocsRoot => "/docs",
            Route::DocsIndex => "/docs/",
            Route::Docs => "/docs/{*file}",
            Route::Kpis => "/v1/analytics/kpis",
            Route::Timeseries => "/v1/analytics/timeseries",
            Route::TopSkus => "/v1/analytics/top-skus",
            Route::StatusFunnel => "/v1/analytics/status-funnel",
            Route::AdminCache => "/admin/cache",
            Route::AdminCacheOrder => "/admin/cache/orders/{order_id}",
            Route::AdminStream => "/admin/stream",
            Route::AdminConfig => "/admin/config",
            Route::AdminReload => "/admin/reload",
        }
    }

    /// Methods the route answers; HEAD goes wherever GET does.
    pub fn methods(self) -> &'static [Method] {
        match self {
            Route::OrdersBatchGet | Route::AdminReload => &[Method::POST],
            Route::AdminCacheOrder => &[Method::DELETE],
            _ => &[Method::GET, Method::HEAD],
        }
    }

    /// Whether the route belongs to the admin surface (`admin.listen`).
    pub fn is_admin(self) -> bool {
        matches!(
            self,
            Route::AdminCache | Route::AdminCacheOrder | Route::AdminStream | Route::AdminConfig | Route::AdminReload
        )
    }

    /// Probes and scrapes: never shed under overload.
    pub fn is_probe(self) -> bool {
        matches!(self, Route::Healthz | Route::Readyz | Route::Metrics)
    }

    const ALL: [Route; 21] = [
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::Order,
        Route::OrderByNumber,
        Route::OrdersBatchGet,
        Route::Orders,
        Route::CustomerOrders,
        Route::OpenApi,
        Route::DocsRoot,
        Route::DocsIndex,
        Route::Docs,
        Route::Kpis,
        Route::Timeseries,
        Route::TopSkus,
        Route::StatusFunnel,
        Route::AdminCache,
        Route::AdminCacheOrder,
        Route::AdminStream,
        Route::AdminConfig,
        Route::AdminReload,
    ];
}

/// What the router made of a request line.
#[derive(Debug, PartialEq, Eq)]
pub enum Matched<'a> {
    Found { route: Route, params: Vec<(&'a str, &'a str)> },
    MethodNotAllowed { route: Route, allow: String },
    NotFound,
}

/// The compiled route table.
pub struct Router {
    inner: matchit::Router<Route>,
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

impl Router {
    /// Compiles every route's template.
    pub fn new() -> Self {
        let mut inner = matchit::Router::new();
        for r in Route::ALL {
            inner.insert(r.template(), r).expect("route templates do not conflict");
        }
        Router { inner }
    }

    /// Matches a path and method.
    pub fn route<'a>(&'a self, method: &Method, path: &'a str) -> Matched<'a> {
        let Ok(m) = self.inner.at(path) else { return Matched::NotFound };
        let route = *m.value;
        if !route.methods().contains(method) {
            let allow = route.methods().iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
            return Matched::MethodNotAllowed { route, allow };
        }
        let params = m.params.iter().collect();
        Matched::Found { route, params }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_methods() {
        let r = Router::new();
        assert!(matches!(r.route(&Method::GET, "/healthz"), Matched::Found { route: Route::Healthz, .. }));
        assert!(matches!(r.route(&Method::HEAD, "/readyz"), Matched::Found { route: Route::Readyz, .. }));
        assert_eq!(r.route(&Method::GET, "/nope"), Matched::NotFound);
        match r.route(&Method::GET, "/v1/orders/abc") {
            Matched::Found { route: Route::Order, params } => assert_eq!(params, vec![("order_id", "abc")]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            r.route(&Method::GET, "/v1/orders/by-number/ON-1"),
            Matched::Found { route: Route::OrderByNumber, .. }
        ));
        assert!(matches!(
            r.route(&Method::POST, "/v1/orders:batchGet"),
            Matched::Found { route: Route::OrdersBatchGet, .. }
        ));
        assert!(matches!(r.route(&Method::GET, "/v1/orders"), Matched::Found { route: Route::Orders, .. }));
        match r.route(&Method::POST, "/metrics") {
            Matched::MethodNotAllowed { allow, .. } => assert_eq!(allow, "GET, HEAD"),
            other => panic!("{other:?}"),
        }
    }
}
