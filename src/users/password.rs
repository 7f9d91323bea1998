//! Password hashing with argon2id, always off the async threads.

use std::sync::LazyLock;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

use crate::error::{Error, Result};

/// Verified against when the username is unknown, so a wrong username costs the same time
/// as a wrong password and the two cannot be told apart.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    Argon2::default()
        .hash_password(b"loom-dummy-password-for-timing")
        .map(|h| h.to_string())
        .unwrap_or_default()
});

pub async fn hash(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(anyhow::anyhow!("hashing a password failed: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(e.into()))?
}

/// Checks a password against a stored hash, or against a dummy hash when there is none.
/// Returns false for a missing hash even if the dummy happens to match.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| DUMMY_HASH.clone());
        let ok = Argon2::default().verify_password(password.as_bytes(), phc.as_str()).is_ok();
        Ok::<bool, Error>(ok && known)
    })
    .await
    .map_err(|e| Error::Internal(e.into()))?
}

/// Computes the dummy hash ahead of the first login, so that login is not slower.
pub fn warm_up() {
    LazyLock::force(&DUMMY_HASH);
}
