//! The domain error type. Every layer below HTTP returns it; `http::error` maps it to a
//! response in exactly one place.

use std::borrow::Cow;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that parsed but breaks a rule: 422 with a stable code.
    #[error("{message}")]
    Invalid { code: &'static str, message: Cow<'static, str> },
    /// Input that could not be read at all: 400 with a stable code.
    #[error("{message}")]
    BadRequest { code: &'static str, message: Cow<'static, str> },
    #[error("{0} not found")]
    NotFound(Cow<'static, str>),
    /// The request conflicts with the current state: 409 with a stable code.
    #[error("{message}")]
    Conflict { code: &'static str, message: Cow<'static, str> },
    #[error("{0}")]
    Unauthenticated(Cow<'static, str>),
    /// Authenticated but not allowed: 403, `forbidden` or a more precise code.
    #[error("{message}")]
    Forbidden { code: &'static str, message: Cow<'static, str> },
    #[error("{0}")]
    RateLimited(Cow<'static, str>),
    /// A dependency (the database, the gateway) cannot be reached right now: 503.
    #[error("{0}")]
    Unavailable(Cow<'static, str>),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn invalid(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Error::Invalid { code, message: message.into() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Error::BadRequest { code, message: message.into() }
    }

    pub fn conflict(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Error::Conflict { code, message: message.into() }
    }

    pub fn not_found(what: impl Into<Cow<'static, str>>) -> Self {
        Error::NotFound(what.into())
    }

    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Error::Forbidden { code: "forbidden", message: message.into() }
    }

    /// A write that came with a session cookie but without that session's CSRF token.
    pub fn csrf() -> Self {
        Error::Forbidden {
            code: "csrf_failed",
            message: "this form or request is missing its CSRF token, or it is stale: \
                      reload the page and try again"
                .into(),
        }
    }

    pub fn unauthenticated(message: impl Into<Cow<'static, str>>) -> Self {
        Error::Unauthenticated(message.into())
    }

    /// The stable machine-readable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid { code, .. } | Error::BadRequest { code, .. } => code,
            Error::Conflict { code, .. } => code,
            Error::NotFound(_) => "not_found",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::Forbidden { code, .. } => code,
            Error::RateLimited(_) => "rate_limited",
            Error::Unavailable(_) => "unavailable",
            Error::Database(e) if is_unavailable(e) => "unavailable",
            Error::Database(e) if is_contention(e) => "concurrent_update",
            Error::Database(e) if is_bad_text(e) => "invalid_text",
            Error::Database(diesel::result::Error::NotFound) => "not_found",
            Error::Database(_) | Error::Internal(_) => "internal",
        }
    }
}

/// Connection loss, a closed pool connection or a statement timeout: the database is
/// there but cannot answer now.
fn is_unavailable(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error as D};
    match e {
        D::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => true,
        D::DatabaseError(_, info) => {
            // 57014 query_canceled (statement_timeout), 57P01 admin_shutdown,
            // 53300 too_many_connections, 08xxx connection exceptions
            let msg = info.message();
            msg.contains("canceling statement due to statement timeout")
                || msg.contains("terminating connection")
                || msg.contains("too many clients")
        }
        _ => false,
    }
}

/// Text Postgres cannot store (a NUL character): the client's input, not our failure.
pub fn is_bad_text(e: &diesel::result::Error) -> bool {
    matches!(e, diesel::result::Error::DatabaseError(_, info)
        if info.message().contains("invalid byte sequence for encoding"))
}

/// A deadlock or serialisation failure: another transaction got in the way, and the same
/// request is likely to succeed if sent again.
pub fn is_contention(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error as D};
    match e {
        D::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        D::DatabaseError(_, info) => info.message().contains("deadlock detected"),
        _ => false,
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for Error {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        tracing::warn!(error = %e, "database pool could not hand out a connection");
        Error::Unavailable("the database is unavailable".into())
    }
}

impl Error {
    /// True when the underlying database error is a unique-key violation.
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            Error::Database(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}
