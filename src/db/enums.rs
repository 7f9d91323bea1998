//! Mapping between Rust enums and Postgres enum types.

/// Implements text conversions and diesel's `ToSql`/`FromSql` for a fieldless enum that
/// mirrors a Postgres enum type. The enum itself must derive `AsExpression` and `FromSqlRow`
/// with the matching `sql_type`.
#[macro_export]
macro_rules! pg_enum {
    ($rust:ident, $sql:path, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $rust {
            pub const ALL: &'static [$rust] = &[$($rust::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($rust::$variant => $text),+ }
            }
        }

        impl ::std::str::FromStr for $rust {
            type Err = $crate::db::enums::UnknownVariant;

            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                match s {
                    $($text => Ok($rust::$variant),)+
                    _ => Err($crate::db::enums::UnknownVariant {
                        value: s.to_owned(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }

        impl ::std::fmt::Display for $rust {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::diesel::serialize::ToSql<$sql, ::diesel::pg::Pg> for $rust {
            fn to_sql<'b>(
                &'b self,
                out: &mut ::diesel::serialize::Output<'b, '_, ::diesel::pg::Pg>,
            ) -> ::diesel::serialize::Result {
                use ::std::io::Write;
                out.write_all(self.as_str().as_bytes())?;
                Ok(::diesel::serialize::IsNull::No)
            }
        }

        impl ::diesel::deserialize::FromSql<$sql, ::diesel::pg::Pg> for $rust {
            fn from_sql(
                bytes: ::diesel::pg::PgValue<'_>,
            ) -> ::diesel::deserialize::Result<Self> {
                let text = ::std::str::from_utf8(bytes.as_bytes())?;
                Ok(text.parse::<$rust>()?)
            }
        }
    };
}

/// Declares a fieldless enum mirroring a Postgres enum type of `schema::sql_types`, with
/// serde (in the given case), an OpenAPI schema and the diesel mapping.
///
/// The case is a `tt`, not a `literal`: a `literal` fragment reaches the derives wrapped in an
/// invisible group, which serde sees through and utoipa does not, so the OpenAPI document
/// named the variants in Rust's case (`InProgress`) while the API sent `in_progress`.
#[macro_export]
macro_rules! db_enum {
    ($(#[$meta:meta])* $name:ident, $sql:ident, $serde:tt, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize,
            ::utoipa::ToSchema, ::diesel::AsExpression, ::diesel::FromSqlRow,
        )]
        #[diesel(sql_type = $crate::db::schema::sql_types::$sql)]
        #[serde(rename_all = $serde)]
        pub enum $name { $($variant),+ }

        $crate::pg_enum!($name, $crate::db::schema::sql_types::$sql, { $($variant => $text),+ });
    };
}

/// A text that names none of an enum's variants.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown value {value:?}; expected one of: {}", expected.join(", "))]
pub struct UnknownVariant {
    pub value: String,
    pub expected: &'static [&'static str],
}
