//! Small state files (the vote, the purge point, a snapshot's description): one JSON value
//! in the workspace's common frame.
//!
//! ```text
//! [magic, 8 bytes][format version u32 LE][JSON length u32 LE][JSON][CRC-32 u32 LE of all before]
//! ```
//! Written whole by [`write`] (a temporary file, fsync, rename, directory fsync), so a crash
//! leaves the old file or the new one; [`read`] checks the magic, version and checksum
//! before a byte of the JSON is trusted.

use serde::{de::DeserializeOwned, Serialize};
use std::io::{self, Write};
use std::path::Path;

/// The format version of every frame this crate writes.
pub const VERSION: u32 = 1;

/// The frame of `value`, as bytes.
pub fn encode<T: Serialize>(magic: &[u8; 8], value: &T) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(value).map_err(io::Error::other)?;
    let mut out = persist::ChecksumWriter::new(Vec::with_capacity(json.len() + 20));
    out.write_all(magic)?;
    out.u32(VERSION)?;
    out.u32(json.len() as u32)?;
    out.write_all(&json)?;
    out.finish()
}

/// The value in the frame at the start of `bytes` (bytes past the frame are ignored: a
/// frame rewritten in place over a longer one leaves those).
pub fn decode<T: DeserializeOwned>(magic: &[u8; 8], bytes: &[u8]) -> io::Result<T> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let len = bytes
        .get(12..16)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(|| bad("a frame shorter than its header".into()))?;
    let end = 16usize
        .checked_add(len)
        .and_then(|n| n.checked_add(4))
        .filter(|&n| n <= bytes.len())
        .ok_or_else(|| bad("a frame cut short".into()))?;
    let body =
        persist::check_frame(&bytes[..end], magic, VERSION).map_err(|e| bad(e.to_string()))?;
    serde_json::from_slice(&body[16..]).map_err(|e| bad(e.to_string()))
}

/// Replaces `path` with the frame of `value`, atomically.
pub fn write<T: Serialize>(path: &Path, magic: &[u8; 8], value: &T) -> io::Result<()> {
    let bytes = encode(magic, value)?;
    persist::replace_file(path, |out| out.write_all(&bytes))
}

/// The value framed in `path`; `None` when there is no such file.
pub fn read<T: DeserializeOwned>(path: &Path, magic: &[u8; 8]) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => decode(magic, &bytes)
            .map(Some)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_refuse_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write(&path, b"TESTFRAM", &serde_json::json!({"a": [1, 2]})).unwrap();
        let v: serde_json::Value = read(&path, b"TESTFRAM").unwrap().unwrap();
        assert_eq!(v, serde_json::json!({"a": [1, 2]}));
        assert!(read::<serde_json::Value>(&path, b"OTHERMAG").is_err());
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 6] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read::<serde_json::Value>(&path, b"TESTFRAM").is_err());
        assert!(
            read::<serde_json::Value>(&dir.path().join("none"), b"TESTFRAM")
                .unwrap()
                .is_none()
        );
        // Trailing bytes of an older, longer frame are ignored.
        let mut long = encode(b"TESTFRAM", &1u32).unwrap();
        long.extend_from_slice(b"leftover");
        assert_eq!(decode::<u32>(b"TESTFRAM", &long).unwrap(), 1);
    }
}
