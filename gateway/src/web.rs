//! The users page: the build-free web client in `web/`, embedded in the binary.
//!
//! `GET /` and `GET /users/{id}` answer the same `index.html` (the page routes on the client
//! with the History API); `GET /assets/{path}` answers the file `web/{path}`. The page
//! speaks only to `POST /graphql`, with the key the user enters, like any other client.
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles and data only from
//! this origin, no inline script, no framing) and `Cache-Control: no-cache` with an `ETag`:
//! file names carry no content hash, so a browser revalidates each file (a 304 when
//! unchanged) and a new binary is never mixed with an old cached module.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Scripts, styles, images and fetches from this origin only, nothing inline, no framing.
/// uPlot sets styles through CSSOM (`el.style.x = …`), which `style-src 'self'` allows, so
/// no `'unsafe-inline'` is needed (the browser tests fail on any CSP violation).
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One file of `web/`, as served under `/assets/`.
pub struct WebAsset {
    /// Path under `web/` and under `/assets/`.
    pub path: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! web_assets {
    ($($path:literal),* $(,)?) => {
        &[$(WebAsset {
            path: $path,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../web/", $path)),
        }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const GRAPHQL: &str = "application/graphql; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// Every file of `web/`; `gateway/tests/web.rs` fails when one on disk is missing here.
pub static WEB_ASSETS: &[WebAsset] = web_assets![
    "index.html",
    "app.js",
    "api.js",
    "charts.js",
    "dom.js",
    "format.js",
    "range.js",
    "users.js",
    "user.js",
    "style.css",
    "favicon.svg",
    "queries/overview.graphql",
    "queries/users.graphql",
    "queries/user_detail.graphql",
    "queries/sessions.graphql",
    "vendor/uplot/uPlot.esm.js",
    "vendor/uplot/uPlot.min.css",
    "vendor/uplot/LICENSE",
];

/// Strong validators, computed once: FNV-1a over each file's bytes.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    WEB_ASSETS
        .iter()
        .map(|asset| {
            let hash = asset.bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
            HeaderValue::from_str(&format!("\"{hash:016x}\""))
                .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
        })
        .collect()
});

/// The media type of a file of `web/`, by its extension; None for a kind the page does not use.
pub fn content_type_for(path: &str) -> Option<&'static str> {
    let extension = path.rsplit_once('.').map(|(_, ext)| ext);
    match extension {
        Some("js") => Some(JS),
        Some("css") => Some(CSS),
        Some("graphql") => Some(GRAPHQL),
        Some("html") => Some(HTML),
        Some("svg") => Some("image/svg+xml"),
        None if path.ends_with("LICENSE") => Some("text/plain; charset=utf-8"),
        _ => None,
    }
}

pub(crate) fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/users/{user_id}", get(index))
        .route("/assets/{*path}", get(asset))
}

fn find(path: &str) -> Option<usize> {
    WEB_ASSETS.iter().position(|asset| asset.path == path)
}

async fn index(headers: HeaderMap) -> Response {
    match find("index.html") {
        Some(position) => serve(position, &headers),
        None => not_found(),
    }
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    // index.html is the page itself, answered at `/` and `/users/{id}` only.
    match find(&path).filter(|_| path != "index.html") {
        Some(position) => serve(position, &headers),
        None => not_found(),
    }
}

fn serve(position: usize, request_headers: &HeaderMap) -> Response {
    let asset = &WEB_ASSETS[position];
    let etag = ETAGS[position].clone();
    let unchanged = request_headers
        .get(IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|tag| tag.trim() == "*" || tag.trim().trim_start_matches("W/") == etag)
        });
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let content_type = content_type_for(asset.path).unwrap_or("application/octet-stream");
        ([(CONTENT_TYPE, content_type)], asset.bytes).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(ETAG, etag);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    security_headers(headers);
    response
}

fn not_found() -> Response {
    let mut response = (
        StatusCode::NOT_FOUND,
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        "not found",
    )
        .into_response();
    security_headers(response.headers_mut());
    response
}

fn security_headers(headers: &mut HeaderMap) {
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_asset_has_a_known_content_type() {
        for asset in WEB_ASSETS {
            assert!(content_type_for(asset.path).is_some(), "{}", asset.path);
        }
        assert_eq!(content_type_for("app.js"), Some(JS));
        assert_eq!(content_type_for("x.exe"), None);
    }

    #[test]
    fn etags_differ_per_content_and_are_quoted() {
        assert_eq!(ETAGS.len(), WEB_ASSETS.len());
        for (etag, asset) in ETAGS.iter().zip(WEB_ASSETS) {
            let text = etag.to_str().unwrap_or_default();
            assert!(
                text.starts_with('"') && text.ends_with('"'),
                "{}",
                asset.path
            );
        }
        assert_ne!(ETAGS[0], ETAGS[1]);
    }
}
