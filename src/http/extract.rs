//! Extractors of our own, for what actix's built-in ones do not do.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// Bodies of optional JSON (close, reopen) are small.
const LIMIT: usize = 64 * 1024;

/// A JSON body that may be left out entirely (then `T::default()`); a body that is present
/// must parse, and every failure is a JSON error like the rest of the API.
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default + 'static> FromRequest for OptionalJson<T> {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Error>>>>;

    fn from_request(_: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let mut payload = payload.take();
        Box::pin(async move {
            let mut body = Vec::new();
            while let Some(chunk) = payload.next().await {
                let chunk =
                    chunk.map_err(|e| Error::bad_request("unreadable_body", e.to_string()))?;
                if body.len() + chunk.len() > LIMIT {
                    return Err(Error::bad_request(
                        "body_too_large",
                        "the request body is too large",
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(OptionalJson(T::default()));
            }
            serde_json::from_slice(&body).map(OptionalJson).map_err(|e| {
                if e.is_data() {
                    Error::invalid("invalid_body", e.to_string())
                } else {
                    Error::bad_request("malformed_json", e.to_string())
                }
            })
        })
    }
}
