//! Secrets Loom hands out (API tokens, session ids, CSRF tokens): random, compared in
//! constant time, and stored only as a digest.

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// 256 random bits, URL-safe base64 (43 characters).
pub fn random() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(anyhow::anyhow!("no randomness available: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What is stored in place of a secret.
pub fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
        assert!(!same("", "a"));
    }

    #[test]
    fn random_secrets_are_long_and_distinct() {
        let (a, b) = (random().expect("random"), random().expect("random"));
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }
}
