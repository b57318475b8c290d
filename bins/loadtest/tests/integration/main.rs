//! Integration tests of `loadtest`: the arithmetic against hand-computed cases, whole runs of
//! the binary against an in-process mock Qdrant server whose answers are known exactly, and
//! an end-to-end run against the real router binary.

mod histogram;
mod mock_runs;
mod recall;
mod router_e2e;
mod support;
