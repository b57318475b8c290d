//! End-to-end tests of the `router` binary over real sockets: each test starts the real
//! process on a free port with its own temporary directories and speaks Qdrant's REST API to
//! it, checking answers against brute force computed here.

mod api_model;
mod cache;
mod cluster;
mod common;
mod config;
mod disk_faults;
mod durability;
mod flow;
mod grpc;
mod indexing;
mod limits;
mod records;
mod security;
mod slow_clients;
mod snapshots;
