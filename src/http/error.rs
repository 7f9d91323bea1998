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

/// JSON of the wrong shape is 422 `invalid_body`; what is not JSON at all is 400 (with the
/// line and column of the syntax error, which locate it).
pub fn serde_error(de: &serde_json::Error) -> Error {
    if de.is_data() {
        let message = readable(&de.to_string());
        Error::invalid("invalid_body", format!("the body does not fit: {message}"))
    } else {
        Error::bad_request("malformed_json", de.to_string())
    }
}

pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    req: &HttpRequest,
) -> actix_web::Error {
    let message = match &err {
        actix_web::error::QueryPayloadError::Deserialize(de) => readable(&de.to_string()),
        other => other.to_string(),
    };
    let e = Error::bad_request("invalid_query", format!("the query does not fit: {message}"));
    for_client(req, e)
}

/// serde's account of a value of the wrong shape, worded for a person: no parser position
/// (a body is one line to its sender), and lists of allowed values written as lists.
pub fn readable(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(at) if message[at..].contains(" column ") => &message[..at],
        _ => message,
    };
    let plain = |list: &str| list.replace('`', "");
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        if let Some((value, allowed)) = rest.split_once(", expected one of ") {
            return format!("{value} is not one of {}", plain(allowed));
        }
        if let Some((value, allowed)) = rest.split_once(", expected ") {
            return format!("{value} is not {}", plain(allowed));
        }
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        if let Some((field, allowed)) = rest.split_once(", expected one of ") {
            return format!("there is no field {field}; the fields are {}", plain(allowed));
        }
        if let Some((field, allowed)) = rest.split_once(", expected ") {
            return format!("there is no field {field}; the field is {}", plain(allowed));
        }
        if let Some((field, _)) = rest.split_once(", there are no fields") {
            return format!("there is no field {field}: it takes none");
        }
    }
    if let Some(field) = message.strip_prefix("missing field ") {
        return format!("the field {field} is required");
    }
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((got, wanted)) = rest.split_once(", expected ")
    {
        return format!("expected {wanted}, got {got}");
    }
    message.to_owned()
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

#[cfg(test)]
mod tests {
    use super::readable;

    #[test]
    fn serde_messages_read_as_sentences_without_parser_positions() {
        let cases = [
            (
                "unknown variant `urgent`, expected one of `open`, `closed` at line 1 column 42",
                "`urgent` is not one of open, closed",
            ),
            ("unknown variant `x`, expected `agent` or `human`", "`x` is not agent or human"),
            (
                "unknown field `colour`, expected one of `title`, `body` at line 1 column 9",
                "there is no field `colour`; the fields are title, body",
            ),
            ("missing field `title` at line 1 column 2", "the field `title` is required"),
            (
                "invalid type: string \"x\", expected i32 at line 1 column 14",
                "expected i32, got string \"x\"",
            ),
            ("something else", "something else"),
        ];
        for (raw, want) in cases {
            assert_eq!(readable(raw), want);
        }
    }
}
