//! Route table: path templates to routes, and which methods each accepts.

use http::Method;

pub use crate::route::Route;

/// What the router made of a request line.
#[derive(Debug, PartialEq, Eq)]
pub enum Matched<'a> {
    Found { route: Route, params: Params<'a> },
    MethodNotAllowed { route: Route, allow: String },
    NotFound,
}

/// The most path parameters a route template holds (checked when the table
/// is built): they are kept inline, so routing allocates nothing.
const MAX_PARAMS: usize = 2;

/// A matched route's path parameters, by name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Params<'a> {
    items: [(&'a str, &'a str); MAX_PARAMS],
    len: usize,
}

impl<'a> Params<'a> {
    /// The parameter's raw (still percent-encoded) value; empty when the
    /// route has no such parameter.
    pub fn get(&self, name: &str) -> &'a str {
        self.items[..self.len].iter().find(|(k, _)| *k == name).map_or("", |(_, v)| *v)
    }

    /// Every parameter, in template order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.items[..self.len].iter().copied()
    }
}

/// What `/v1/orders/{order_id}` begins with (see [`Router::route`]).
const ORDER_PREFIX: &str = "/v1/orders/";

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
        assert_eq!(
            Route::Order.template(),
            format!("{ORDER_PREFIX}{{order_id}}"),
            "the fast path of Router::route follows this template"
        );
        let mut inner = matchit::Router::new();
        for r in Route::ALL {
            assert!(
                r.template().matches('{').count() <= MAX_PARAMS,
                "{}: more than {MAX_PARAMS} parameters",
                r.template()
            );
            inner.insert(r.template(), r).expect("route templates do not conflict");
        }
        Router { inner }
    }

    /// Matches a path and method.
    pub fn route<'a>(&'a self, method: &Method, path: &'a str) -> Matched<'a> {
        // Lookups by id are most of the traffic: `/v1/orders/{order_id}` is
        // told by its prefix and one segment after it, without walking the
        // tree and decoding its parameters (about 3 % of a cache hit's
        // instructions). Every other path, and a method the route does not
        // take, goes to the tree; `the_fast_path_agrees_with_the_tree`
        // checks that both answer alike.
        if let Some(id) = path.strip_prefix(ORDER_PREFIX) {
            if !id.is_empty()
                && memchr::memchr(b'/', id.as_bytes()).is_none()
                && Route::Order.methods().contains(method)
            {
                let mut params = Params::default();
                params.items[0] = ("order_id", id);
                params.len = 1;
                return Matched::Found { route: Route::Order, params };
            }
        }
        self.tree(method, path)
    }

    fn tree<'a>(&'a self, method: &Method, path: &'a str) -> Matched<'a> {
        let Ok(m) = self.inner.at(path) else { return Matched::NotFound };
        let route = *m.value;
        if !route.methods().contains(method) {
            let allow = route.methods().iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
            return Matched::MethodNotAllowed { route, allow };
        }
        let mut params = Params::default();
        for (slot, p) in params.items.iter_mut().zip(m.params.iter()) {
            *slot = p;
            params.len += 1;
        }
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
            Matched::Found { route: Route::Order, params } => {
                assert_eq!(params.iter().collect::<Vec<_>>(), vec![("order_id", "abc")]);
                assert_eq!(params.get("order_id"), "abc");
                assert_eq!(params.get("customer_id"), "");
            }
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

    proptest::proptest! {
        /// The shortcut for `/v1/orders/{order_id}` answers every path and
        /// method as the tree would.
        #[test]
        fn the_fast_path_agrees_with_the_tree(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("/v1/orders/"),
                    proptest::strategy::Just("/v1/orders"),
                    proptest::strategy::Just("/"),
                    proptest::strategy::Just("by-number"),
                    proptest::strategy::Just("events"),
                    proptest::strategy::Just(":batchGet"),
                    proptest::strategy::Just("abc-1"),
                    proptest::strategy::Just("%2F"),
                    proptest::strategy::Just("é"),
                    proptest::strategy::Just(""),
                ],
                0..6,
            ),
            method in proptest::prop_oneof![
                proptest::strategy::Just(Method::GET),
                proptest::strategy::Just(Method::HEAD),
                proptest::strategy::Just(Method::POST),
                proptest::strategy::Just(Method::DELETE),
            ],
        ) {
            let r = Router::new();
            let path = parts.concat();
            proptest::prop_assert_eq!(r.route(&method, &path), r.tree(&method, &path), "{} {}", method, path);
        }
    }
}
