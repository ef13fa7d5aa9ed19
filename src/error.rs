//! The one error type of xent.

/// Everything that can go wrong in xent. Variants carry the numbers a user needs to fix the call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XentError {
    /// No adapter matched the request (backend, adapter name), or none exists at all.
    #[error("no GPU adapter found ({0})")]
    NoAdapter(String),

    /// The adapter refused the device request.
    #[error("could not open a device on adapter `{adapter}`: {reason}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// What wgpu said.
        reason: String,
    },

    /// A buffer, a slice or a file does not have the length its shape implies.
    #[error("{what}: expected {expected} elements, got {got}")]
    LengthMismatch {
        /// Which argument.
        what: &'static str,
        /// Elements the shape implies.
        expected: usize,
        /// Elements given.
        got: usize,
    },

    /// Two operands have shapes that do not fit together.
    #[error("{what}: shape {got:?} does not match {expected:?}")]
    ShapeMismatch {
        /// Which argument.
        what: &'static str,
        /// The shape required.
        expected: Vec<usize>,
        /// The shape given.
        got: Vec<usize>,
    },

    /// A shape that no kernel accepts (for example N = 0 classes).
    #[error("invalid shape: {0}")]
    InvalidShape(String),

    /// A class label outside `[0, N)` that is not the `ignore_index`.
    #[error(
        "label {label} in row {row} is outside [0, {classes}) and is not ignore_index {ignore_index}"
    )]
    LabelOutOfRange {
        /// Row of the bad label.
        row: usize,
        /// The label.
        label: i64,
        /// Number of classes N.
        classes: usize,
        /// The ignore index in force.
        ignore_index: i64,
    },

    /// An option or a value is outside its domain (non-finite weight, smoothing outside [0, 1], …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The work needs more than the device offers.
    #[error("{what} needs {needed} but the device allows {limit}")]
    TooLarge {
        /// What is too large.
        what: String,
        /// What the work needs, with unit.
        needed: String,
        /// The device's limit, with unit.
        limit: String,
    },

    /// A matrix or labels made on one [`crate::Context`] were given to another. Data moves between
    /// contexts only through the host (`read`, then `from_slice`).
    #[error(
        "{what} was made on another xent Context (#{owner}) than the one it was given to (#{context})"
    )]
    WrongContext {
        /// Which operand.
        what: &'static str,
        /// The id of the context that made it.
        owner: u64,
        /// The id of the context it was given to.
        context: u64,
    },

    /// wgpu reported an error (validation, out of memory, lost device) during a call.
    #[error("GPU error: {0}")]
    Gpu(String),

    /// Reading a buffer back failed.
    #[error("buffer readback failed: {0}")]
    Readback(String),

    /// A file could not be read or written (CLI helpers).
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// Shorthand used across the crate.
pub type Result<T, E = XentError> = std::result::Result<T, E>;
