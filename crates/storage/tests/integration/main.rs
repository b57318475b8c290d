mod archive;
mod collection;
mod filter_cache;
mod wal;
