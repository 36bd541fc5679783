//! Guard rails for every HTTP route but `/healthz`: at most `http.max_concurrent_requests`
//! requests in the handlers at once (the next one is shed with `503 Service Unavailable` and
//! `Retry-After: 1` rather than queued, and counted in `http_shed_total`), and request bodies
//! of at most `http.max_request_body` bytes (`413`; only admin job creation takes a body).
//! A permit is held until the response head is ready, not while a large body streams.
//! Header size and count, and the time to send a request head, are limited earlier, per
//! connection (`web::server`).

use std::convert::Infallible;
use std::sync::Arc;

use axum::error_handling::HandleErrorLayer;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{BoxError, ServiceBuilder};
use tower_http::limit::RequestBodyLimitLayer;

use crate::metrics::Metrics;

/// Wrap every route of `router` in the limits.
pub fn apply<S>(
    router: Router<S>,
    max_concurrent: usize,
    max_body: u64,
    metrics: Arc<Metrics>,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let shed = move |_: BoxError| {
        Metrics::inc(&metrics.http_shed_total);
        std::future::ready(Ok::<_, Infallible>(overloaded()))
    };
    router.layer(
        ServiceBuilder::new()
            .layer(RequestBodyLimitLayer::new(
                usize::try_from(max_body).unwrap_or(usize::MAX),
            ))
            .layer(HandleErrorLayer::new(shed))
            .load_shed()
            // one semaphore for every route: `Router::layer` builds the layer per route, and a
            // plain concurrency limit would give each route its own budget
            .layer(GlobalConcurrencyLimitLayer::new(max_concurrent)),
    )
}

fn overloaded() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        "the gateway is handling as many requests as it may (http.max_concurrent_requests); retry\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, Bytes};
    use axum::http::Request;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    fn app(gate: Arc<tokio::sync::Semaphore>, metrics: Arc<Metrics>) -> Router {
        let slow = get(move || async move {
            let _permit = gate.acquire().await;
            "done"
        });
        let echo = post(|body: Bytes| async move { body.len().to_string() });
        let router = Router::new().route("/slow", slow).route("/echo", echo);
        // like `web::app`: `with_state` turns handlers into routes once, so the layer (and its
        // semaphore) is built once rather than per request
        apply(router, 1, 1024, metrics).with_state(())
    }

    #[tokio::test]
    async fn sheds_beyond_the_limit_and_refuses_large_bodies() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let metrics = Arc::new(Metrics::default());
        let app = app(Arc::clone(&gate), Arc::clone(&metrics));
        let req = || Request::get("/slow").body(Body::empty()).unwrap();
        let first = tokio::spawn(app.clone().oneshot(req()));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let second = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            app.clone().oneshot(req()),
        )
        .await
        .expect("second: shed at once")
        .unwrap();
        assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(second.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            metrics
                .http_shed_total
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        gate.add_permits(1);
        let first = tokio::time::timeout(std::time::Duration::from_secs(2), first)
            .await
            .expect("first completes");
        assert_eq!(first.unwrap().unwrap().status(), StatusCode::OK);

        let post = |n: usize| {
            Request::post("/echo")
                .body(Body::from(vec![b'x'; n]))
                .unwrap()
        };
        let small = app.clone().oneshot(post(1000)).await.unwrap();
        assert_eq!(small.status(), StatusCode::OK);
        let large = app.oneshot(post(4096)).await.unwrap();
        assert_eq!(large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    /// The limit is one budget for the whole router, not one per route.
    #[tokio::test]
    async fn the_limit_spans_every_route() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let metrics = Arc::new(Metrics::default());
        let app = app(Arc::clone(&gate), metrics);
        let slow = Request::get("/slow").body(Body::empty()).unwrap();
        let first = tokio::spawn(app.clone().oneshot(slow));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let other = Request::post("/echo").body(Body::from("x")).unwrap();
        let other = app.oneshot(other).await.unwrap();
        assert_eq!(other.status(), StatusCode::SERVICE_UNAVAILABLE);
        gate.add_permits(1);
        let _ = first.await;
    }
}
