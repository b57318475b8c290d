//! Durable collections (being written).

mod error;
pub mod archive;
pub mod wal;

pub use error::{Result, StorageError, StorageErrorKind};
