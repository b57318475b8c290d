mod archive;
mod collection;
mod filter_cache;
mod fixtures;
mod wal;
