//! The broker library's error type. Request-level failures are Kafka error codes in responses,
//! not `Error`s; this type is for start-up, storage and framing failures.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration `{key}`: {reason}")]
    InvalidConfig { key: String, reason: String },

    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("I/O error: {0}")]
    Network(#[from] std::io::Error),

    #[error("corrupt segment {path} at position {position}: {reason}")]
    SegmentCorrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },

    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),

    #[error("metadata log: {0}")]
    Metadata(String),

    #[error("protocol: {0}")]
    Protocol(String),

    #[error("the log directory is offline after an I/O error")]
    LogDirOffline,
}

impl Error {
    pub fn config(key: &str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    /// An error that means the disk cannot be trusted with writes (a full or failing or
    /// read-only device), as opposed to a missing file or too many open descriptors.
    pub fn is_storage_failure(&self) -> bool {
        let source = match self {
            Error::Io { source, .. } | Error::Network(source) => source,
            _ => return false,
        };
        // EIO, ENOSPC, EROFS, EDQUOT; a short write of zero bytes.
        matches!(source.raw_os_error(), Some(5 | 28 | 30 | 122))
            || source.kind() == std::io::ErrorKind::WriteZero
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
