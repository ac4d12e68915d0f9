//! The bit-set newtype shared by [`Rights`](crate::Rights) and [`Signals`](crate::Signals).
//!
//! Written by hand because this crate has no dependencies (the `bitflags` crate would do it).

macro_rules! bit_set {
    ($(#[$meta:meta])* $name:ident { $($(#[$flag_meta:meta])* $flag:ident = $value:expr,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(u32);

        impl $name {
            $($(#[$flag_meta])* pub const $flag: Self = Self($value);)*
            /// The empty set.
            pub const NONE: Self = Self(0);
            /// Every named flag, with its contract name.
            pub const NAMED: &[(&str, Self)] = &[$((stringify!($flag), Self::$flag),)*];

            /// The set from raw bits (unknown bits are kept; see [`Self::is_known`]).
            pub const fn from_bits(bits: u32) -> Self {
                Self(bits)
            }
            /// The raw bits.
            pub const fn bits(self) -> u32 {
                self.0
            }
            /// Whether every flag of `other` is in `self`.
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }
            /// Whether `self` and `other` share a flag.
            pub const fn intersects(self, other: Self) -> bool {
                self.0 & other.0 != 0
            }
            /// Whether no flag is set.
            pub const fn is_empty(self) -> bool {
                self.0 == 0
            }
            /// The union.
            pub const fn union(self, other: Self) -> Self {
                Self(self.0 | other.0)
            }
            /// The flags of `self` that are not in `other`.
            pub const fn difference(self, other: Self) -> Self {
                Self(self.0 & !other.0)
            }
            /// The flags in both.
            pub const fn intersection(self, other: Self) -> Self {
                Self(self.0 & other.0)
            }
        }

        impl core::ops::BitOr for $name {
            type Output = Self;
            fn bitor(self, other: Self) -> Self {
                self.union(other)
            }
        }

        impl core::ops::BitOrAssign for $name {
            fn bitor_assign(&mut self, other: Self) {
                *self = self.union(other);
            }
        }

        impl core::ops::BitAnd for $name {
            type Output = Self;
            fn bitand(self, other: Self) -> Self {
                self.intersection(other)
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(formatter, "{}(", stringify!($name))?;
                let mut rest = self.0;
                let mut first = true;
                for (name, flag) in Self::NAMED {
                    if self.contains(*flag) && !flag.is_empty() {
                        write!(formatter, "{}{}", if first { "" } else { "|" }, name)?;
                        rest &= !flag.0;
                        first = false;
                    }
                }
                if rest != 0 || first {
                    write!(formatter, "{}{:#x}", if first { "" } else { "|" }, rest)?;
                }
                write!(formatter, ")")
            }
        }
    };
}

pub(crate) use bit_set;
