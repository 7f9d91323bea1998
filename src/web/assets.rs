//! The dashboard's styles and scripts, built into the binary (no CDN, nothing to install
//! beside it) and served under `/static/`. URLs carry a digest of the files, so a browser
//! may keep them for a year and still never runs a stale script after an upgrade.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "loom.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../static/loom.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../../static/favicon.svg"),
    },
    Asset {
        name: "loom.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../static/loom.js"),
    },
];

static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h = Sha256::new();
    for a in ASSETS {
        h.update(a.body.as_bytes());
    }
    h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect()
});

/// The digest asset URLs carry (`/static/loom.css?v=…`).
pub fn version() -> &'static str {
    &VERSION
}

#[derive(serde::Deserialize)]
pub struct Query {
    v: Option<String>,
}

/// `GET /static/{name}`: cached for good when asked for this build's version, revalidated
/// otherwise.
pub async fn serve(
    req: HttpRequest,
    name: web::Path<String>,
    query: web::Query<Query>,
) -> HttpResponse {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name.as_str()) else {
        return HttpResponse::NotFound().content_type("text/plain").body("no such file");
    };
    let etag = format!("\"{}\"", version());
    if req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(&etag) {
        return HttpResponse::NotModified().insert_header((header::ETAG, etag)).finish();
    }
    let cache = if query.v.as_deref() == Some(version()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::ETAG, etag))
        .body(asset.body)
}
