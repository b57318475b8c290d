//! TODO(crate skeleton): being written.
