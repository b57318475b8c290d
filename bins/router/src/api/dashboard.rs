//! `/dashboard`: a page of the router's own state in the browser (collections, indexing,
//! shards and nodes, live rates and latencies from `/metrics`, a query box), served from
//! files embedded in the binary (`bins/router/dashboard/`; no CDN, no build step).
//!
//! The files hold no data and need no key; the page asks the API with the key the user
//! types in. A content security policy keeps the page to its own scripts and this origin.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("../../dashboard/index.html");
const APP_JS: &str = include_str!("../../dashboard/app.js");
const STYLE_CSS: &str = include_str!("../../dashboard/style.css");

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The files change with the binary: revalidate rather than keep a stale copy.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /dashboard` (and `/dashboard/`): the page.
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /dashboard/{file}`: the page's script and style sheet.
pub async fn file(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "" | "index.html" => index().await,
        "app.js" => asset("text/javascript; charset=utf-8", APP_JS),
        "style.css" => asset("text/css; charset=utf-8", STYLE_CSS),
        _ => crate::error::ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Not found: dashboard file {file}"),
        )
        .into_response(),
    }
}
