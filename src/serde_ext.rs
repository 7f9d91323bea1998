//! Small serde helpers shared by request types.

use serde::Deserialize;

/// Distinguishes an absent field (None) from an explicit null (Some(None)).
pub fn double_option<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
