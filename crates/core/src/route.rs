//! Bounded route labels for metrics and spans.

use std::fmt;

use axum::extract::MatchedPath;
use http::{Extensions, Request};

/// The label of requests that matched no route (404s, scanners, the fallback).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// A route label with bounded cardinality: the axum route template (`/api/items/{id}`) that
/// matched the request, or [`UNMATCHED_ROUTE`]. Never the raw path, so clients cannot create new
/// metric series or span names by inventing paths.
///
/// Cheap to clone (a reference count), so guards that outlive the request can keep it.
///
/// ```
/// use palisade_core::RouteLabel;
///
/// let request = http::Request::builder().uri("/wp-admin/../etc/passwd").body(()).unwrap();
/// assert_eq!(RouteLabel::of(&request).as_str(), "unmatched");
/// ```
#[derive(Debug, Clone)]
pub struct RouteLabel(Option<MatchedPath>);

impl RouteLabel {
    /// The label of `request`.
    pub fn of<B>(request: &Request<B>) -> Self {
        Self::from_extensions(request.extensions())
    }

    /// The label from request extensions (axum inserts [`MatchedPath`] when a route matches).
    pub fn from_extensions(extensions: &Extensions) -> Self {
        Self(extensions.get::<MatchedPath>().cloned())
    }

    /// The label text.
    pub fn as_str(&self) -> &str {
        self.0.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
    }

    /// Whether a route matched.
    pub fn is_matched(&self) -> bool {
        self.0.is_some()
    }
}

impl AsRef<str> for RouteLabel {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for RouteLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{Router, body::Body, middleware, response::IntoResponse, routing::get};
    use tower::ServiceExt;

    /// Echoes the label a middleware sees, the way a metrics layer would read it.
    async fn label_of(path: &str) -> String {
        let app = Router::new()
            .route("/api/items/{id}", get(|| async { "item" }))
            .layer(middleware::from_fn(
                |req: axum::extract::Request, next: middleware::Next| async move {
                    let label = RouteLabel::of(&req).to_string();
                    let mut response = next.run(req).await.into_response();
                    response
                        .headers_mut()
                        .insert("x-route", label.parse().unwrap());
                    response
                },
            ));
        let response = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        response.headers()["x-route"].to_str().unwrap().to_string()
    }

    #[tokio::test]
    async fn matched_routes_use_the_template() {
        assert_eq!(label_of("/api/items/42").await, "/api/items/{id}");
        assert_eq!(label_of("/api/items/43").await, "/api/items/{id}");
    }

    #[tokio::test]
    async fn unmatched_paths_share_one_label() {
        assert_eq!(label_of("/random/scanner/path").await, UNMATCHED_ROUTE);
        assert_eq!(label_of("/api/items/1/extra").await, UNMATCHED_ROUTE);
    }
}
