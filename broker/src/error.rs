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

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
