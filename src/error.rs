//! One error type for the crate: a kind the caller can match on, a message
//! that says what was wrong and what is allowed, and the I/O error behind it
//! where there is one.
//!
//! Rejecting a page is not an error (see [`crate::StoreOutcome`]); errors are
//! for bad input and for faults. The Python layer maps each kind to the
//! exception SPEC.md names.

use std::fmt;

/// What went wrong, for the caller to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// An argument is out of range: a page of the wrong length, an offset
    /// beyond the area, a swap type that was never turned on.
    InvalidArgument,
    /// A configuration value is not allowed: an unknown or unavailable
    /// compressor, a bad level, a percent out of range.
    Config,
    /// Nothing is stored at this `(swap_type, offset)`.
    NotFound {
        /// The swap area looked in.
        swap_type: u32,
        /// The slot that holds nothing.
        offset: u64,
    },
    /// The cache was closed, or the swap area was swapped off.
    Closed,
    /// The backing swap file could not be created, read or written.
    Backing,
    /// Stored data failed its check on load; no bytes were returned.
    Corrupt,
    /// The swap area (or the cache) holds the memory of a live region:
    /// close the region first.
    Busy,
    /// The OS refused something the call needs that is no one's setting: a
    /// thread (`EAGAIN` past `RLIMIT_NPROC`), memory. The I/O error behind
    /// it has the errno.
    System,
}

/// The crate's error: kind, message, and the I/O error behind it if any.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<std::io::Error>,
}

impl Error {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// An error caused by the I/O error `source`.
    pub fn io(kind: ErrorKind, message: impl Into<String>, source: std::io::Error) -> Self {
        Error {
            kind,
            message: message.into(),
            source: Some(source),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }

    /// The same error, its message prefixed with where it happened.
    pub(crate) fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the source.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The OS error number behind it, if it came from I/O.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.as_ref().and_then(|e| e.raw_os_error())
    }

    /// The I/O error behind it, if any.
    pub fn io_source(&self) -> Option<&std::io::Error> {
        self.source.as_ref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
