//! The routes the gateway serves, with what each one is: its path template,
//! its methods, and whether it is a probe or admin. On the ground floor, so
//! the HTTP layer that matches them and the edge that guards them share one
//! definition without importing each other.

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
    OrderEvents,
    CustomerOrderEvents,
    OpenApi,
    DocsRoot,
    DocsIndex,
    Docs,
    Redoc,
    RedocFile,
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
            Route::OrderEvents => "/v1/orders/{order_id}/events",
            Route::CustomerOrderEvents => "/v1/customers/{customer_id}/orders/events",
            Route::OpenApi => "/openapi.json",
            Route::DocsRoot => "/docs",
            Route::DocsIndex => "/docs/",
            Route::Docs => "/docs/{*file}",
            Route::Redoc => "/redoc",
            Route::RedocFile => "/redoc/{*file}",
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

    pub(crate) const ALL: [Route; 25] = [
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::Order,
        Route::OrderByNumber,
        Route::OrdersBatchGet,
        Route::Orders,
        Route::CustomerOrders,
        Route::OrderEvents,
        Route::CustomerOrderEvents,
        Route::OpenApi,
        Route::DocsRoot,
        Route::DocsIndex,
        Route::Docs,
        Route::Redoc,
        Route::RedocFile,
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
