//! [`Handle`]: an owned handle value; [`Failed`]: an error that gives back what was not moved.

use core::fmt;
use core::num::NonZeroU32;

use nebulet_abi::layout::InfoBasic;
use nebulet_abi::{Error, InfoTopic, ObjectType, RawHandle, Rights, Signals};

use crate::sys;

/// An owned handle of this process: it refers to a kernel object with some [`Rights`], and is
/// closed when dropped.
///
/// The value is never [`HANDLE_INVALID`](nebulet_abi::HANDLE_INVALID) (0), so
/// `Option<Handle>` is as small as a `u32`.
#[derive(PartialEq, Eq, Hash)]
pub struct Handle(NonZeroU32);

impl Handle {
    /// Takes ownership of a raw handle value, e.g. one received from the kernel by other means
    /// or made by [`Handle::into_raw`]; `None` for 0.
    ///
    /// The new `Handle` closes the value when dropped, so the value must not be owned by
    /// anything else (two owners would close it twice, and the second close could hit an
    /// unrelated handle that reused the value). This is not memory-unsafe: the kernel checks
    /// every handle value.
    pub fn from_raw(raw: RawHandle) -> Option<Handle> {
        NonZeroU32::new(raw).map(Handle)
    }

    /// A handle value the kernel just returned (never 0 when the call succeeded).
    pub(crate) fn from_kernel(raw: RawHandle) -> Result<Handle, Error> {
        Handle::from_raw(raw).ok_or(Error::Internal)
    }

    /// The raw value, still owned by `self`.
    pub fn as_raw(&self) -> RawHandle {
        self.0.get()
    }

    /// Gives up ownership: returns the raw value without closing it.
    pub fn into_raw(self) -> RawHandle {
        let raw = self.as_raw();
        core::mem::forget(self);
        raw
    }

    /// A second handle to the same object with `rights` (a subset of this handle's rights, or
    /// [`Rights::SAME_RIGHTS`]). Needs [`Rights::DUPLICATE`].
    pub fn duplicate(&self, rights: Rights) -> Result<Handle, Error> {
        Handle::from_kernel(sys::handle_duplicate(self.as_raw(), rights.bits())?)
    }

    /// Replaces this handle by one with `rights` (a subset, or [`Rights::SAME_RIGHTS`]); the
    /// old value becomes invalid. On failure the handle is still valid and given back.
    pub fn replace(self, rights: Rights) -> Result<Handle, Failed<Handle>> {
        match sys::handle_replace(self.as_raw(), rights.bits()) {
            Ok(raw) => match Handle::from_raw(raw) {
                Some(new) => {
                    // The old value is gone in the kernel: do not close it again.
                    let _ = self.into_raw();
                    Ok(new)
                }
                // The kernel broke the contract (OK without a handle).
                None => Err(Failed { error: Error::Internal, returned: self }),
            },
            Err(error) => Err(Failed { error, returned: self }),
        }
    }

    /// Closes the handle now and reports the status (dropping it closes it too, silently).
    pub fn close(self) -> Result<(), Error> {
        sys::handle_close(self.into_raw())
    }

    /// The object's id, type and this handle's rights. Needs [`Rights::INSPECT`].
    pub fn info(&self) -> Result<InfoBasic, Error> {
        let mut bytes = [0u8; InfoBasic::SIZE];
        let actual = sys::object_get_info(self.as_raw(), InfoTopic::Basic as u32, &mut bytes)?;
        if actual < InfoBasic::SIZE {
            return Err(Error::Internal);
        }
        Ok(InfoBasic::from_bytes(&bytes))
    }

    /// The type of the object, if this SDK knows it. Needs [`Rights::INSPECT`].
    pub fn object_type(&self) -> Result<Option<ObjectType>, Error> {
        Ok(match self.info()?.object_type {
            1 => Some(ObjectType::Channel),
            2 => Some(ObjectType::Event),
            3 => Some(ObjectType::Timer),
            4 => Some(ObjectType::Module),
            5 => Some(ObjectType::Process),
            _ => None,
        })
    }

    /// Clears then sets user-settable signals ([`Signals::EVENT_SETTABLE`]) of the object.
    /// Needs [`Rights::SIGNAL`].
    pub fn signal(&self, clear: Signals, set: Signals) -> Result<(), Error> {
        sys::object_signal(self.as_raw(), clear.bits(), set.bits())
    }

    /// Blocks until any of `signals` is asserted on the object, or `deadline` passes
    /// ([`Error::TimedOut`]). Returns the signals asserted at wake-up. Needs [`Rights::WAIT`].
    pub fn wait_one(&self, signals: Signals, deadline: i64) -> Result<Signals, Error> {
        let (status, observed) = sys::object_wait_one(self.as_raw(), signals.bits(), deadline);
        status.map(|()| Signals::from_bits(observed))
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Nothing useful can be done about a failure here.
        let _ = sys::handle_close(self.as_raw());
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Handle({})", self.as_raw())
    }
}

impl AsRef<Handle> for Handle {
    fn as_ref(&self) -> &Handle {
        self
    }
}

/// A failed call that moves something (handles) into the kernel: the call consumed nothing, so
/// the error gives it back.
///
/// Converts into the bare [`Error`] (dropping what was given back), so `?` works in functions
/// that return `Result<_, Error>`.
#[derive(Debug)]
pub struct Failed<T> {
    /// Why the call failed.
    pub error: Error,
    /// What the call would have moved, still owned by the caller.
    pub returned: T,
}

impl<T> Failed<T> {
    /// The error and what was given back.
    pub fn into_parts(self) -> (Error, T) {
        (self.error, self.returned)
    }
}

impl<T> From<Failed<T>> for Error {
    fn from(failed: Failed<T>) -> Error {
        failed.error
    }
}

impl<T> fmt::Display for Failed<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, formatter)
    }
}

impl<T: fmt::Debug> std::error::Error for Failed<T> {}

/// Defines a typed wrapper around [`Handle`] with its conversions.
macro_rules! typed_handle {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, PartialEq, Eq, Hash)]
        pub struct $name(crate::Handle);

        impl $name {
            #[doc = concat!("Wraps a handle that refers to a ", stringify!($name), " (not checked: a handle")]
            /// of another type makes the calls fail with `ERR_WRONG_TYPE`).
            pub fn from_handle(handle: crate::Handle) -> Self {
                Self(handle)
            }

            /// The underlying handle.
            pub fn as_handle(&self) -> &crate::Handle {
                &self.0
            }

            /// Unwraps the underlying handle (still open).
            pub fn into_handle(self) -> crate::Handle {
                self.0
            }

            /// A second handle to the same object; see [`Handle::duplicate`](crate::Handle::duplicate).
            pub fn duplicate(&self, rights: nebulet_abi::Rights) -> Result<Self, nebulet_abi::Error> {
                self.0.duplicate(rights).map(Self)
            }

            /// Blocks until any of `signals` is asserted or `deadline` passes; see
            /// [`Handle::wait_one`](crate::Handle::wait_one).
            pub fn wait_one(
                &self,
                signals: nebulet_abi::Signals,
                deadline: i64,
            ) -> Result<nebulet_abi::Signals, nebulet_abi::Error> {
                self.0.wait_one(signals, deadline)
            }
        }

        impl From<$name> for crate::Handle {
            fn from(value: $name) -> crate::Handle {
                value.0
            }
        }

        impl AsRef<crate::Handle> for $name {
            fn as_ref(&self) -> &crate::Handle {
                &self.0
            }
        }
    };
}

pub(crate) use typed_handle;
