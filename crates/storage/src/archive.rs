//! Snapshot archives (being written).
