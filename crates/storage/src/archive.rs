//! One-file snapshot archives, verified whole before anything is unpacked.
//!
//! A snapshot of a collection is a set of files; [`write_archive`] packs them into one file and
//! returns its SHA-256 (the checksum Qdrant reports for a snapshot), and [`unpack_archive`]
//! restores them, refusing a damaged archive before a single byte lands on disk.
//!
//! ```
//! use storage::archive::{sha256_file, unpack_archive, write_archive};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let source = dir.path().join("points.bin");
//! std::fs::write(&source, b"some points").unwrap();
//! let archive = dir.path().join("snapshot.vrsnap");
//! let (sha256, size) =
//!     write_archive(&archive, &[("segments/0/points.bin".to_string(), source)]).unwrap();
//! assert_eq!(sha256, sha256_file(&archive).unwrap());
//! assert_eq!(size, std::fs::metadata(&archive).unwrap().len());
//!
//! let restored = dir.path().join("restored");
//! let entries = unpack_archive(&archive, &restored).unwrap();
//! assert_eq!(entries[0].path, "segments/0/points.bin");
//! assert_eq!(std::fs::read(restored.join("segments/0/points.bin")).unwrap(), b"some points");
//! ```
//!
//! # Layout
//!
//! All integers little-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `b"VRSNAP\0\0"` |
//! | 8 | 4 | format version (`u32`, currently [`ARCHIVE_VERSION`]) |
//! | 12 | 8 | entry count (`u64`) |
//! | 20 | ... | the entries, back to back |
//! | end − 32 | 32 | SHA-256 of every byte before it |
//!
//! Each entry:
//!
//! | size | field |
//! |---|---|
//! | 2 | path length `p` in bytes (`u16`) |
//! | p | path: UTF-8, relative, `/`-separated, no empty, `.` or `..` component |
//! | 8 | data length `n` (`u64`) |
//! | 4 | CRC-32 (IEEE) of the data |
//! | n | data |
//!
//! The per-entry CRC names the damaged file in an error; the trailing SHA-256 covers the header,
//! the paths and the lengths as well. Files are streamed in both directions, never held whole.

use crate::{Result, StorageError};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The magic bytes that open every archive.
pub const ARCHIVE_MAGIC: [u8; 8] = *b"VRSNAP\0\0";
/// The archive format version this build writes and reads.
pub const ARCHIVE_VERSION: u32 = 1;

const HEADER_LEN: u64 = 20;
const TRAILER_LEN: u64 = 32;
/// Path length, data length and CRC: the least an entry takes.
const ENTRY_FIXED_LEN: u64 = 2 + 8 + 4;
const COPY_BUFFER: usize = 1 << 20;

/// One file of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveEntry {
    /// Relative, `/`-separated path inside the archive; never absolute, never with `..`.
    pub path: String,
    /// Size of the file in bytes.
    pub len: u64,
}

/// Writes `files` (name inside the archive, absolute source path) into one archive at `out`,
/// through a temporary file beside it that is fsynced and then renamed over `out`, so `out` is
/// either the old file or the complete new archive. Returns the hex SHA-256 of the whole
/// archive file and its size in bytes.
///
/// A name that is empty, absolute, contains `..`, `.`, an empty component or a backslash, is
/// longer than 65535 bytes, repeats another, or is both a file and a directory of another
/// name is [`StorageError::InvalidInput`]; so is a source that is not a regular file.
pub fn write_archive(out: &Path, files: &[(String, PathBuf)]) -> Result<(String, u64)> {
    check_entry_paths(files.iter().map(|(name, _)| name.as_str()))
        .map_err(StorageError::InvalidInput)?;
    let file_name = out
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| {
            StorageError::InvalidInput(format!("{} does not name a file", out.display()))
        })?;
    let parent = parent_directory(out);
    let temporary = parent.join(format!(".{file_name}.tmp-{}", unique_suffix()));
    let written = write_archive_file(&temporary, files).and_then(|(sha256, size)| {
        fs::rename(&temporary, out).map_err(|e| StorageError::io(out, e))?;
        sync_directory(parent)?;
        Ok((sha256, size))
    });
    if written.is_err() {
        // Best effort: the error that matters is the one being returned.
        let _ = fs::remove_file(&temporary);
    }
    written
}

/// Writes the archive to `path` and fsyncs it; returns the whole file's SHA-256 and size.
fn write_archive_file(path: &Path, files: &[(String, PathBuf)]) -> Result<(String, u64)> {
    let io_error = |e| StorageError::io(path, e);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io_error)?;
    let mut writer = BufWriter::with_capacity(COPY_BUFFER, file);
    writer.write_all(&ARCHIVE_MAGIC).map_err(io_error)?;
    writer
        .write_all(&ARCHIVE_VERSION.to_le_bytes())
        .map_err(io_error)?;
    writer
        .write_all(&(files.len() as u64).to_le_bytes())
        .map_err(io_error)?;
    let mut offset = HEADER_LEN;
    let mut buffer = vec![0u8; COPY_BUFFER];
    for (name, source_path) in files {
        let mut source = File::open(source_path).map_err(|e| StorageError::io(source_path, e))?;
        let metadata = source
            .metadata()
            .map_err(|e| StorageError::io(source_path, e))?;
        if !metadata.is_file() {
            return Err(StorageError::InvalidInput(format!(
                "{} (archive entry {name}) is not a regular file",
                source_path.display()
            )));
        }
        writer
            .write_all(&(name.len() as u16).to_le_bytes())
            .map_err(io_error)?;
        writer.write_all(name.as_bytes()).map_err(io_error)?;
        // The length and CRC go before the data but are known only after it: write zeros and
        // patch them, so the stored values describe exactly the bytes copied even if the
        // source changes meanwhile.
        let fields_at = offset + 2 + name.len() as u64;
        writer.write_all(&[0u8; 12]).map_err(io_error)?;
        let mut crc = crc32fast::Hasher::new();
        let mut data_len = 0u64;
        loop {
            let read = match source.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StorageError::io(source_path, e)),
            };
            crc.update(&buffer[..read]);
            writer.write_all(&buffer[..read]).map_err(io_error)?;
            data_len += read as u64;
        }
        let end = fields_at + 12 + data_len;
        let mut fields = [0u8; 12];
        fields[0..8].copy_from_slice(&data_len.to_le_bytes());
        fields[8..12].copy_from_slice(&crc.finalize().to_le_bytes());
        writer.seek(SeekFrom::Start(fields_at)).map_err(io_error)?;
        writer.write_all(&fields).map_err(io_error)?;
        writer.seek(SeekFrom::Start(end)).map_err(io_error)?;
        offset = end;
    }
    let mut file = writer.into_inner().map_err(|e| io_error(e.into_error()))?;

    // Hash what is on disk (the patched fields included), then append the trailer and fold it
    // into the checksum of the whole file.
    file.seek(SeekFrom::Start(0)).map_err(io_error)?;
    let mut sha = Sha256::new();
    let hashed = hash_stream(&mut file, &mut sha, &mut buffer).map_err(io_error)?;
    if hashed != offset {
        return Err(io_error(io::Error::other(format!(
            "wrote {offset} bytes but read back {hashed}"
        ))));
    }
    let trailer = sha.clone().finalize();
    file.write_all(&trailer).map_err(io_error)?;
    sha.update(trailer);
    persist::sync_file(&file).map_err(io_error)?;
    Ok((to_hex(&sha.finalize()), offset + TRAILER_LEN))
}

/// Verifies the whole archive (header, every entry's CRC, the trailing SHA-256, the entry
/// paths) without writing anything, and lists its entries.
///
/// Damage is [`StorageError::Corrupt`] with the byte offset; an intact archive whose paths are
/// unsafe (absolute, `..`, duplicated) is [`StorageError::InvalidInput`].
pub fn verify_archive(archive: &Path) -> Result<Vec<ArchiveEntry>> {
    Ok(scan_archive(archive)?
        .into_iter()
        .map(|entry| entry.entry)
        .collect())
}

/// Verifies `archive` whole (as [`verify_archive`]) BEFORE writing anything, then unpacks it
/// into `dest`, which must not exist: the files are written and fsynced in a temporary
/// directory beside `dest`, which is then renamed to `dest`. On any error `dest` does not exist
/// afterwards and the temporary directory is removed.
///
/// `dest` existing is [`StorageError::AlreadyExists`]; damage is [`StorageError::Corrupt`];
/// unsafe entry paths are [`StorageError::InvalidInput`].
pub fn unpack_archive(archive: &Path, dest: &Path) -> Result<Vec<ArchiveEntry>> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(StorageError::AlreadyExists(format!(
            "snapshot destination {}",
            dest.display()
        )));
    }
    let scanned = scan_archive(archive)?;
    let dest_name = dest
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| {
            StorageError::InvalidInput(format!("{} does not name a directory", dest.display()))
        })?;
    let parent = parent_directory(dest);
    persist::create_dir_durable(parent).map_err(|e| StorageError::io(parent, e))?;
    let temporary = parent.join(format!(".{dest_name}.unpack-{}", unique_suffix()));
    let unpacked = unpack_verified(archive, &scanned, &temporary).and_then(|()| {
        fs::rename(&temporary, dest).map_err(|e| StorageError::io(dest, e))?;
        sync_directory(parent)
    });
    match unpacked {
        Ok(()) => Ok(scanned.into_iter().map(|entry| entry.entry).collect()),
        Err(error) => {
            // Best effort: the error that matters is the one being returned.
            let _ = fs::remove_dir_all(&temporary);
            Err(error)
        }
    }
}

/// Returns the lowercase hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| StorageError::io(path, e))?;
    let mut sha = Sha256::new();
    let mut buffer = vec![0u8; COPY_BUFFER];
    hash_stream(&mut file, &mut sha, &mut buffer).map_err(|e| StorageError::io(path, e))?;
    Ok(to_hex(&sha.finalize()))
}

/// An entry found by [`scan_archive`], with what the unpacking pass needs to copy it.
struct ScannedEntry {
    entry: ArchiveEntry,
    data_offset: u64,
    crc: u32,
}

/// Parses and verifies the archive; see [`verify_archive`].
fn scan_archive(archive: &Path) -> Result<Vec<ScannedEntry>> {
    let file = File::open(archive).map_err(|e| StorageError::io(archive, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| StorageError::io(archive, e))?
        .len();
    if file_len < HEADER_LEN + TRAILER_LEN {
        return Err(StorageError::corrupt(
            archive,
            format!("{file_len} bytes, too short for a snapshot archive"),
        ));
    }
    let body_end = file_len - TRAILER_LEN;
    let mut reader = HashingReader {
        inner: BufReader::with_capacity(COPY_BUFFER, file),
        sha: Sha256::new(),
        offset: 0,
    };
    let read_error = |e| StorageError::io(archive, e);
    let corrupt = |offset: u64, reason: String| {
        StorageError::corrupt(archive, format!("offset {offset}: {reason}"))
    };

    let mut header = [0u8; HEADER_LEN as usize];
    reader.read_exact(&mut header).map_err(read_error)?;
    if header[0..8] != ARCHIVE_MAGIC {
        return Err(corrupt(0, "not a snapshot archive (bad magic)".to_string()));
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if version != ARCHIVE_VERSION {
        return Err(corrupt(
            8,
            format!("archive format version {version}, this build reads {ARCHIVE_VERSION}"),
        ));
    }
    let entry_count = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
    if entry_count > (body_end - HEADER_LEN) / ENTRY_FIXED_LEN {
        return Err(corrupt(
            12,
            format!("{entry_count} entries cannot fit in {file_len} bytes"),
        ));
    }

    // Paths are kept as raw bytes and judged only once the SHA-256 matched: a flipped byte
    // must read as damage, not as a suspicious name.
    // The count is checked against the file size, but a damaged one can still be in the
    // millions: grow as entries are actually found rather than trusting it for an allocation.
    let mut raw_entries = Vec::with_capacity(entry_count.min(1024) as usize);
    let mut buffer = vec![0u8; COPY_BUFFER];
    for index in 0..entry_count {
        let entry_offset = reader.offset;
        let runs_past_end = || {
            corrupt(
                entry_offset,
                format!("entry {index} runs past the end of the archive"),
            )
        };
        if body_end - reader.offset < ENTRY_FIXED_LEN {
            return Err(runs_past_end());
        }
        let mut path_len = [0u8; 2];
        reader.read_exact(&mut path_len).map_err(read_error)?;
        let path_len = u64::from(u16::from_le_bytes(path_len));
        if body_end - reader.offset < path_len + ENTRY_FIXED_LEN - 2 {
            return Err(runs_past_end());
        }
        let mut path = vec![0u8; path_len as usize];
        reader.read_exact(&mut path).map_err(read_error)?;
        let mut fields = [0u8; 12];
        reader.read_exact(&mut fields).map_err(read_error)?;
        let data_len = u64::from_le_bytes(fields[0..8].try_into().expect("8 bytes"));
        let stored_crc = u32::from_le_bytes(fields[8..12].try_into().expect("4 bytes"));
        if body_end - reader.offset < data_len {
            return Err(runs_past_end());
        }
        let data_offset = reader.offset;
        let crc = copy_checked(&mut reader, data_len, &mut buffer, &mut io::sink())
            .map_err(read_error)?;
        if crc != stored_crc {
            return Err(corrupt(
                data_offset,
                format!(
                    "entry {index} ({}) fails its checksum",
                    String::from_utf8_lossy(&path)
                ),
            ));
        }
        raw_entries.push((path, data_len, data_offset, stored_crc));
    }
    if reader.offset != body_end {
        return Err(corrupt(
            reader.offset,
            format!(
                "{} unexpected bytes after the last entry",
                body_end - reader.offset
            ),
        ));
    }
    let computed = reader.sha.finalize();
    let mut trailer = [0u8; TRAILER_LEN as usize];
    reader.inner.read_exact(&mut trailer).map_err(read_error)?;
    if computed[..] != trailer[..] {
        return Err(corrupt(
            body_end,
            "SHA-256 trailer does not match the contents".to_string(),
        ));
    }

    let mut entries = Vec::with_capacity(raw_entries.len());
    for (path, len, data_offset, crc) in raw_entries {
        let path = String::from_utf8(path).map_err(|_| {
            StorageError::InvalidInput(format!(
                "snapshot archive {} holds a path that is not UTF-8",
                archive.display()
            ))
        })?;
        entries.push(ScannedEntry {
            entry: ArchiveEntry { path, len },
            data_offset,
            crc,
        });
    }
    check_entry_paths(entries.iter().map(|e| e.entry.path.as_str())).map_err(|reason| {
        StorageError::InvalidInput(format!("snapshot archive {}: {reason}", archive.display()))
    })?;
    Ok(entries)
}

/// Writes the verified entries under `root` (created here) and fsyncs files and directories.
fn unpack_verified(archive: &Path, entries: &[ScannedEntry], root: &Path) -> Result<()> {
    fs::create_dir(root).map_err(|e| StorageError::io(root, e))?;
    let mut directories = vec![root.to_path_buf()];
    let mut source = File::open(archive).map_err(|e| StorageError::io(archive, e))?;
    let mut buffer = vec![0u8; COPY_BUFFER];
    for scanned in entries {
        let target = root.join(&scanned.entry.path);
        if let Some(parent) = target.parent() {
            if !parent.exists() {
                fs::create_dir_all(parent).map_err(|e| StorageError::io(parent, e))?;
                for directory in parent.ancestors().take_while(|d| *d != root) {
                    directories.push(directory.to_path_buf());
                }
            }
        }
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| StorageError::io(&target, e))?;
        source
            .seek(SeekFrom::Start(scanned.data_offset))
            .map_err(|e| StorageError::io(archive, e))?;
        let crc = copy_checked(&mut source, scanned.entry.len, &mut buffer, &mut out)
            .map_err(|e| StorageError::io(&target, e))?;
        // The archive was verified a moment ago; a mismatch now means it changed underneath.
        if crc != scanned.crc {
            return Err(StorageError::corrupt(
                archive,
                format!(
                    "offset {}: entry {} changed while it was being unpacked",
                    scanned.data_offset, scanned.entry.path
                ),
            ));
        }
        persist::sync_file(&out).map_err(|e| StorageError::io(&target, e))?;
    }
    // Children before parents, so each directory entry is durable before the one naming it.
    directories.sort();
    directories.dedup();
    directories.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for directory in &directories {
        sync_directory(directory)?;
    }
    Ok(())
}

/// Copies exactly `len` bytes from `reader` to `writer`; returns their CRC-32.
fn copy_checked(
    reader: &mut impl Read,
    len: u64,
    buffer: &mut [u8],
    writer: &mut impl Write,
) -> io::Result<u32> {
    let mut crc = crc32fast::Hasher::new();
    let mut left = len;
    while left > 0 {
        let take = left.min(buffer.len() as u64) as usize;
        reader.read_exact(&mut buffer[..take])?;
        crc.update(&buffer[..take]);
        writer.write_all(&buffer[..take])?;
        left -= take as u64;
    }
    Ok(crc.finalize())
}

/// Feeds everything `reader` yields into `sha`; returns the byte count.
fn hash_stream(reader: &mut impl Read, sha: &mut Sha256, buffer: &mut [u8]) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        match reader.read(buffer) {
            Ok(0) => return Ok(total),
            Ok(read) => {
                sha.update(&buffer[..read]);
                total += read as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A reader that hashes what it yields and counts its offset.
struct HashingReader<R> {
    inner: R,
    sha: Sha256,
    offset: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.sha.update(&buf[..read]);
        self.offset += read as u64;
        Ok(read)
    }
}

/// Checks each path alone (see [`check_entry_path`]) and all of them together: no duplicate,
/// and no path that is also a directory of another (`a` and `a/b` cannot both be files).
fn check_entry_paths<'a>(paths: impl Iterator<Item = &'a str>) -> std::result::Result<(), String> {
    let mut files = HashSet::new();
    let mut directories = HashSet::new();
    for path in paths {
        check_entry_path(path)?;
        if !files.insert(path) {
            return Err(format!("entry path {path:?} appears twice"));
        }
        for (at, _) in path.match_indices('/') {
            directories.insert(&path[..at]);
        }
    }
    if let Some(clash) = files.iter().find(|path| directories.contains(*path)) {
        return Err(format!(
            "entry path {clash:?} is both a file and a directory"
        ));
    }
    Ok(())
}

/// A safe entry path stays inside the directory it is unpacked into, whatever the platform:
/// relative, `/`-separated, and made only of plain names.
fn check_entry_path(path: &str) -> std::result::Result<(), String> {
    let unsafe_path = |why: &str| Err(format!("entry path {path:?} {why}"));
    if path.is_empty() {
        return unsafe_path("is empty");
    }
    if path.len() > usize::from(u16::MAX) {
        return unsafe_path("is longer than 65535 bytes");
    }
    if path.starts_with('/') {
        return unsafe_path("is absolute");
    }
    if path.contains('\\') || path.contains('\0') {
        return unsafe_path("contains a backslash or a NUL byte");
    }
    if path.len() >= 2 && path.as_bytes()[1] == b':' {
        return unsafe_path("starts with a drive letter");
    }
    for component in path.split('/') {
        match component {
            "" => return unsafe_path("has an empty component"),
            "." | ".." => return unsafe_path("has a '.' or '..' component"),
            _ => {}
        }
    }
    Ok(())
}

/// The directory a path lives in (`.` for a bare file name).
fn parent_directory(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Makes the creations and renames in `dir` durable (where a directory can be fsynced: Unix).
fn sync_directory(dir: &Path) -> Result<()> {
    persist::sync_dir(dir).map_err(|e| StorageError::io(dir, e))
}

/// Process id and a counter: temporary names that neither another process nor a concurrent
/// call in this one can collide with.
fn unique_suffix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_must_stay_inside_the_destination() {
        for good in [
            "a",
            "a/b/c.bin",
            "segments/0/vectors.f32",
            "..a/b..",
            "a/.hidden",
        ] {
            assert_eq!(check_entry_path(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/..",
            "./a",
            "a//b",
            "a/",
            "a\\b",
            "C:x",
            "a\0b",
        ] {
            assert!(check_entry_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_entry_path(&"x".repeat(65_536)).is_err());
        assert!(check_entry_paths(["a/b", "a/c"].into_iter()).is_ok());
        assert!(check_entry_paths(["a/b", "a/b"].into_iter()).is_err());
        assert!(check_entry_paths(["a/b", "a"].into_iter()).is_err());
        assert!(check_entry_paths(["a", "a/b/c"].into_iter()).is_err());
    }

    #[test]
    fn hex_matches_a_known_digest() {
        // SHA-256 of the empty string, from FIPS 180-2 test vectors.
        assert_eq!(
            to_hex(&Sha256::digest(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
