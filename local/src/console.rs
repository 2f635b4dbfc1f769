//! The web console of `longhaul serve` at `/console`: one page, built into the binary (no
//! CDN, no network), that talks to the same authenticated API with a token kept in the
//! tab's session storage. `/console/workflow.json` is the workflow it draws.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const PAGE: &str = include_str!("../console/index.html");

fn secured(content_type: &'static str, body: String) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The page's own inline script and style only; API calls and downloads to this origin.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Signed file links must not leak through Referer.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// `GET /console` and `GET /console/workflow.json` (the definition the server runs).
pub fn console_router(definition_json: String) -> Router {
    Router::new()
        .route(
            "/console",
            get(|| async { secured("text/html; charset=utf-8", PAGE.to_string()) }),
        )
        .route(
            "/console/workflow.json",
            get(move || {
                let d = definition_json.clone();
                async move { secured("application/json", d) }
            }),
        )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        let page = super::PAGE;
        for bad in [
            "http://",
            "https://",
            "//cdn",
            "<script src",
            "rel=\"stylesheet\"",
        ] {
            assert!(!page.contains(bad), "the console must not load {bad}");
        }
    }
}
