//! Extractors of our own, for what actix's built-in ones do not do.

use std::future::{Ready, ready};
use std::marker::PhantomData;

use actix_web::dev::JsonBody;
use actix_web::{FromRequest, HttpRequest, dev::Payload};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::http::error::{json_payload_error, serde_error};

/// The largest JSON body a handler reads (`web::Json`'s limit too, see `extractor_config`).
pub const JSON_LIMIT: usize = 1 << 20;

/// Bodies of optional JSON (close, reopen) are small.
const OPTIONAL_LIMIT: usize = 64 * 1024;

/// A JSON body the handler parses once it has checked the caller's role.
///
/// actix extracts a handler's arguments concurrently, so with `web::Json` a body that does not
/// parse is refused (422) before the role is checked (403), whatever the order of the
/// arguments, and a caller without the role learns what the body should have been. This one
/// only holds on to the body until [`DeferredJson::parse`] (or `parse_or_default`) reads it.
pub struct DeferredJson<T> {
    req: HttpRequest,
    payload: Payload,
    into: PhantomData<fn() -> T>,
}

impl<T> FromRequest for DeferredJson<T> {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        ready(Ok(DeferredJson { req: req.clone(), payload: payload.take(), into: PhantomData }))
    }
}

impl<T: DeserializeOwned> DeferredJson<T> {
    /// Reads and parses the body exactly as `web::Json` does under `extractor_config`: 400
    /// when it is not JSON, too large or of another content type, 422 `invalid_body` when it
    /// is JSON of the wrong shape.
    pub async fn parse(mut self) -> Result<T, Error> {
        JsonBody::new(&self.req, &mut self.payload, None, true)
            .limit(JSON_LIMIT)
            .await
            .map_err(|e| json_payload_error(&e))
    }

    /// For a body that may be left out entirely (then `T::default()`), with or without a
    /// content type; a body that is present must parse, with the same errors as `parse`.
    pub async fn parse_or_default(mut self) -> Result<T, Error>
    where
        T: Default,
    {
        let mut body = Vec::new();
        while let Some(chunk) = self.payload.next().await {
            let chunk = chunk.map_err(|e| Error::bad_request("unreadable_body", e.to_string()))?;
            if body.len() + chunk.len() > OPTIONAL_LIMIT {
                return Err(Error::bad_request("body_too_large", "the request body is too large"));
            }
            body.extend_from_slice(&chunk);
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        serde_json::from_slice(&body).map_err(|e| serde_error(&e))
    }
}
