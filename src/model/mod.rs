//! nhn's domain values, shared by every layer and known to none of the transports: what an
//! async request asks for ([`Work`]), the states a VM, a request and a machine's power go
//! through, the kinds of networks, and what a change event is about. They are plain enums
//! with the exact strings the inventory stores and the API shows, so that code matches on
//! variants instead of comparing strings, and a typo is a compile error, not a mismatch.

mod event;
mod state;
mod work;

pub use event::EventKind;
pub use state::{DriverKind, NetworkKind, Power, RequestStatus, VmState};
pub use work::{MachineOp, Work};

/// A string that names no variant of a model enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a {what}; use one of: {}", .known.join(", "))]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub known: Vec<&'static str>,
}

/// `as_str`, `Display` and `FromStr` over a fixed table of `(variant, text)` pairs.
macro_rules! named {
    ($ty:ident, $what:literal, [$(($variant:ident, $text:literal)),+ $(,)?]) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The text the inventory stores and the API shows.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::model::UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    _ => Err($crate::model::UnknownValue {
                        what: $what,
                        value: s.to_owned(),
                        known: vec![$($text),+],
                    }),
                }
            }
        }
    };
}
pub(crate) use named;
