//! The one place where errors become HTTP responses: `{"error": {"code", "message"}}` with
//! the right status, including actix's own extractor errors.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

use crate::error::Error;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case; clients match on it.
    pub code: String,
    /// For people; may change.
    pub message: String,
}

pub fn body(code: &str, message: impl Into<String>) -> ErrorBody {
    ErrorBody { error: ErrorDetail { code: code.to_owned(), message: message.into() } }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Database(diesel::result::Error::NotFound) => StatusCode::NOT_FOUND,
            Error::Database(_) if self.code() == "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            Error::Database(_) if self.code() == "concurrent_update" => StatusCode::CONFLICT,
            Error::Database(_) if self.code() == "invalid_text" => StatusCode::BAD_REQUEST,
            Error::Database(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let message = public_message(self);
        let mut res = HttpResponse::build(status).json(body(self.code(), message));
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// What a client is told about an error: its message, except for what must stay inside (the
/// cause of a 500, a database's own words), which is logged here once instead.
pub fn public_message(e: &Error) -> String {
    let status = e.status_code();
    match status {
        StatusCode::INTERNAL_SERVER_ERROR => {
            tracing::error!(error = %e, "request failed");
            "something went wrong on our side".to_owned()
        }
        StatusCode::SERVICE_UNAVAILABLE if matches!(e, Error::Database(_)) => {
            tracing::warn!(error = %e, "database unavailable");
            "the database is unavailable; try again shortly".to_owned()
        }
        StatusCode::BAD_REQUEST if matches!(e, Error::Database(_)) => {
            "text may not contain NUL characters".to_owned()
        }
        StatusCode::CONFLICT if matches!(e, Error::Database(_)) => {
            tracing::info!(error = %e, "request lost a race with another transaction");
            "a concurrent change got in the way; send the request again".to_owned()
        }
        _ => e.to_string(),
    }
}

/// Forms (the dashboard's) that cannot be read: an error page, not JSON.
pub fn form_error(err: actix_web::error::UrlencodedError, _: &HttpRequest) -> actix_web::Error {
    use actix_web::error::UrlencodedError as U;
    let e = match &err {
        U::Overflow { .. } | U::UnknownLength => {
            Error::bad_request("form_too_large", "the form is larger than 256 KiB")
        }
        U::ContentType => Error::bad_request(
            "unsupported_content_type",
            "send the form as application/x-www-form-urlencoded",
        ),
        _ => Error::bad_request("invalid_form", format!("the form could not be read: {err}")),
    };
    crate::web::page::PageError::Failed(e).into()
}

/// Malformed or mistyped JSON bodies.
pub fn json_error(err: actix_web::error::JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    json_payload_error(&err).into()
}

/// A JSON body `web::Json` or `extract::DeferredJson` could not read, as the client is told it.
pub fn json_payload_error(err: &actix_web::error::JsonPayloadError) -> Error {
    use actix_web::error::JsonPayloadError as J;
    match err {
        J::ContentType => Error::bad_request(
            "unsupported_content_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        J::OverflowKnownLength { .. } | J::Overflow { .. } => {
            Error::bad_request("body_too_large", "the request body is too large")
        }
        J::Deserialize(de) => serde_error(de),
        other => Error::bad_request("malformed_json", other.to_string()),
    }
}

/// JSON of the wrong shape is 422 `invalid_body`; what is not JSON at all is 400.
pub fn serde_error(de: &serde_json::Error) -> Error {
    if de.is_data() {
        Error::invalid("invalid_body", de.to_string())
    } else {
        Error::bad_request("malformed_json", de.to_string())
    }
}

pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    req: &HttpRequest,
) -> actix_web::Error {
    for_client(req, Error::bad_request("invalid_query", err.to_string()))
}

/// A path parameter that does not parse (a malformed id) names nothing that exists.
pub fn path_error(_: actix_web::error::PathError, req: &HttpRequest) -> actix_web::Error {
    for_client(req, Error::not_found("resource"))
}

/// Whether the client wants JSON: anything under `/api`, or a client asking for it.
fn wants_json(req: &HttpRequest) -> bool {
    req.path().starts_with("/api")
        || req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("json") && !a.contains("html"))
}

/// The error as the client reads it: JSON for the API, an error page for a browser.
fn for_client(req: &HttpRequest, e: Error) -> actix_web::Error {
    if wants_json(req) { e.into() } else { crate::web::page::PageError::Failed(e).into() }
}

/// An unknown route: JSON under `/api` and for clients asking for JSON, a page otherwise.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    if wants_json(&req) {
        HttpResponse::NotFound().json(body("not_found", "no such route"))
    } else {
        crate::web::page::PageError::Failed(Error::not_found("page")).error_response()
    }
}
