//! The fan-out over shards: real local shards on real disk (search, count, deadlines) and
//! test shards that answer with approximate scores (the exact re-rank path).

mod fanout;
mod lazy;
mod rerank;
