//! The set of collections under one storage directory, and their snapshots.
//!
//! ```text
//! <storage>/collections/<name>/   one collection (see `collection`)
//! <storage>/aliases.bin            the aliases (see `aliases`)
//! <snapshots>/<name>/<name>-<unix ms>.snapshot          an archive (see `archive`)
//! <snapshots>/<name>/<name>-<unix ms>.snapshot.sha256   its checksum, as Qdrant lists it
//! <snapshots>/full-snapshot-<unix ms>.snapshot            every collection and the aliases
//! <snapshots>/full-snapshot-<unix ms>.snapshot.sha256
//! ```
//!
//! A full snapshot is one archive (see `archive`) holding `collections/<name>/<file>` for the
//! checkpoint files of every collection and `aliases.bin`; it is restored at start-up
//! ([`Storage::recover_full`], the router's `--storage-snapshot`).

use crate::aliases::{self, AliasChange, AliasMap};
use crate::archive::{unpack_archive, write_archive};
use crate::collection::Collection;
use crate::config::CollectionConfig;
use crate::{Result, StorageError};
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// How the files of full snapshots begin (as Qdrant names them).
pub const FULL_SNAPSHOT_PREFIX: &str = "full-snapshot-";

/// The most collections one server holds.
pub const MAX_COLLECTIONS: usize = 1_000;

/// A snapshot file, as Qdrant describes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SnapshotDescription {
    /// File name.
    pub name: String,
    /// Creation time, RFC 3339 without zone (as Qdrant).
    pub creation_time: Option<String>,
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256.
    pub checksum: Option<String>,
}

/// Every collection of a server.
pub struct Storage {
    collections_dir: PathBuf,
    snapshots_dir: PathBuf,
    collections: RwLock<BTreeMap<String, Arc<Collection>>>,
    aliases_path: PathBuf,
    /// Alias → collection; changed under `admin`, after the file.
    aliases: RwLock<AliasMap>,
    /// Serialises creates, deletes, restores and alias changes.
    admin: Mutex<()>,
}

/// Checks a collection name: what Qdrant accepts, minus what cannot be a directory name.
pub fn validate_collection_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name.starts_with('.')
        || name
            .chars()
            .any(|c| matches!(c, '/' | '\\' | '\0') || c.is_control());
    if bad {
        return Err(StorageError::InvalidCollectionName {
            name: name.to_string(),
        });
    }
    Ok(())
}

impl Storage {
    /// Opens (creating if needed) the storage and every collection in it. A damaged
    /// collection stops start-up with an error naming the file.
    pub fn open(storage_path: &Path, snapshots_path: &Path) -> Result<Storage> {
        let collections_dir = storage_path.join("collections");
        persist::create_dir_durable(&collections_dir)
            .map_err(|e| StorageError::io(&collections_dir, e))?;
        persist::create_dir_durable(snapshots_path)
            .map_err(|e| StorageError::io(snapshots_path, e))?;
        let mut collections = BTreeMap::new();
        let entries = std::fs::read_dir(&collections_dir)
            .map_err(|e| StorageError::io(&collections_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io(&collections_dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with('.') {
                // A delete or restore that a crash interrupted: finish it.
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            if !path.join("config.json").exists() {
                // A create that a crash interrupted before its config was written.
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            let c = Collection::open(&path, &name)?;
            collections.insert(name, c);
        }
        let aliases_path = storage_path.join("aliases.bin");
        let mut alias_map = aliases::load(&aliases_path)?;
        // A delete that a crash interrupted after removing the collection: its aliases go
        // (and an alias can never hide behind a collection of its name).
        let before = alias_map.len();
        alias_map.retain(|a, c| collections.contains_key(c) && !collections.contains_key(a));
        if alias_map.len() != before {
            aliases::save(&aliases_path, &alias_map)?;
        }
        Ok(Storage {
            collections_dir,
            snapshots_dir: snapshots_path.to_path_buf(),
            collections: RwLock::new(collections),
            aliases_path,
            aliases: RwLock::new(alias_map),
            admin: Mutex::new(()),
        })
    }

    /// Applies alias changes, all or none (the rules are in `aliases`), and makes them
    /// durable before they are visible.
    pub fn change_aliases(&self, changes: &[AliasChange]) -> Result<()> {
        let _a = self.admin.lock();
        let next = aliases::applied(&self.aliases.read(), changes, |n| self.exists(n))?;
        aliases::save(&self.aliases_path, &next)?;
        *self.aliases.write() = next;
        Ok(())
    }

    /// Every alias and its collection, by alias.
    pub fn aliases(&self) -> Vec<(String, String)> {
        self.aliases
            .read()
            .iter()
            .map(|(a, c)| (a.clone(), c.clone()))
            .collect()
    }

    /// The collection `name` names: itself, or the one it is an alias of.
    pub fn resolve(&self, name: &str) -> String {
        if self.exists(name) {
            return name.to_string();
        }
        self.aliases
            .read()
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }

    /// Collection names, sorted.
    pub fn list(&self) -> Vec<String> {
        self.collections.read().keys().cloned().collect()
    }

    /// A collection by name or by alias.
    pub fn get(&self, name: &str) -> Result<Arc<Collection>> {
        // Resolved before the map's lock is taken: `resolve` reads the map too, and a
        // second read of a fair lock behind a queued writer would deadlock.
        let real = self.resolve(name);
        self.collections.read().get(&real).cloned().ok_or_else(|| {
            StorageError::CollectionNotFound {
                name: name.to_string(),
            }
        })
    }

    /// Whether it exists.
    pub fn exists(&self, name: &str) -> bool {
        self.collections.read().contains_key(name)
    }

    /// Every collection.
    pub fn all(&self) -> Vec<Arc<Collection>> {
        self.collections.read().values().cloned().collect()
    }

    /// Creates a collection.
    pub fn create(&self, name: &str, config: CollectionConfig) -> Result<Arc<Collection>> {
        validate_collection_name(name)?;
        config.validate()?;
        let _a = self.admin.lock();
        if self.exists(name) || self.aliases.read().contains_key(name) {
            return Err(StorageError::CollectionExists {
                name: name.to_string(),
            });
        }
        if self.collections.read().len() >= MAX_COLLECTIONS {
            return Err(StorageError::TooManyCollections {
                limit: MAX_COLLECTIONS,
            });
        }
        let dir = self.collections_dir.join(name);
        if dir.exists() {
            // Left by a crash mid-create (no config): safe to clear.
            std::fs::remove_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
        }
        let c = Collection::create(&dir, name, config)?;
        self.collections.write().insert(name.to_string(), c.clone());
        Ok(c)
    }

    /// Deletes a collection; whether it existed.
    pub fn delete(&self, name: &str) -> Result<bool> {
        let _a = self.admin.lock();
        if !self.exists(name) {
            return Ok(false);
        }
        // Its aliases go first: a crash after this leaves the collection without them, as
        // the delete would have; one before it leaves both.
        let mut next = self.aliases.read().clone();
        next.retain(|_, c| c != name);
        if next.len() != self.aliases.read().len() {
            aliases::save(&self.aliases_path, &next)?;
            *self.aliases.write() = next;
        }
        let Some(c) = self.collections.write().remove(name) else {
            return Ok(false);
        };
        stop(&c);
        self.remove_dir(&self.collections_dir.join(name))?;
        Ok(true)
    }

    fn remove_dir(&self, dir: &Path) -> Result<()> {
        // Rename first so that a crash mid-delete leaves a dot-directory that start-up
        // removes, never half a collection.
        let trash = self.collections_dir.join(format!(".deleted-{}", unique()));
        std::fs::rename(dir, &trash).map_err(|e| StorageError::io(dir, e))?;
        crate::shard::sync_dir(&self.collections_dir)?;
        std::fs::remove_dir_all(&trash).map_err(|e| StorageError::io(&trash, e))
    }

    /// Flushes every collection (on shutdown) and stops their background threads.
    pub fn close(&self) -> Result<()> {
        let mut first_err = None;
        for c in self.all() {
            if let Err(e) = c.close() {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn snapshot_dir(&self, name: &str) -> PathBuf {
        self.snapshots_dir.join(name)
    }

    /// Creates a snapshot of a collection while writes continue (they wait only while the
    /// checkpoint files are linked aside).
    pub fn create_snapshot(&self, name: &str) -> Result<SnapshotDescription> {
        // An alias names its collection here too.
        let name = &self.resolve(name);
        let c = self.get(name)?;
        let dir = self.snapshot_dir(name);
        persist::create_dir_durable(&dir).map_err(|e| StorageError::io(&dir, e))?;
        let staging = dir.join(format!(".staging-{}", unique()));
        std::fs::create_dir_all(&staging).map_err(|e| StorageError::io(&staging, e))?;
        let result = (|| {
            // Hard links (or copies across devices) pin this checkpoint's files: later
            // checkpoints replace or delete the originals.
            let files = c.with_checkpoint(|files| {
                let mut staged = Vec::with_capacity(files.len());
                for (i, (rel, path)) in files.into_iter().enumerate() {
                    let target = staging.join(format!("{i}"));
                    if std::fs::hard_link(&path, &target).is_err() {
                        std::fs::copy(&path, &target).map_err(|e| StorageError::io(&path, e))?;
                    }
                    staged.push((rel, target));
                }
                Ok(staged)
            })?;
            let file_name = format!("{name}-{}.snapshot", unix_millis());
            let out = dir.join(&file_name);
            let (checksum, size) = write_archive(&out, &files)?;
            std::fs::write(dir.join(format!("{file_name}.sha256")), &checksum)
                .map_err(|e| StorageError::io(&dir, e))?;
            Ok(SnapshotDescription {
                name: file_name.clone(),
                creation_time: creation_time(&out),
                size,
                checksum: Some(checksum),
            })
        })();
        let _ = std::fs::remove_dir_all(&staging);
        result
    }

    /// A collection's snapshots, newest last.
    pub fn list_snapshots(&self, name: &str) -> Result<Vec<SnapshotDescription>> {
        // An alias names its collection here too.
        let name = &self.resolve(name);
        self.get(name)?;
        let dir = self.snapshot_dir(name);
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(out);
        };
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if !file.ends_with(".snapshot") {
                continue;
            }
            let path = e.path();
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            let checksum = std::fs::read_to_string(dir.join(format!("{file}.sha256"))).ok();
            out.push(SnapshotDescription {
                name: file,
                creation_time: creation_time(&path),
                size,
                checksum,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The file of a snapshot, for download.
    pub fn snapshot_path(&self, name: &str, snapshot: &str) -> Result<PathBuf> {
        // An alias names its collection here too.
        let name = &self.resolve(name);
        self.get(name)?;
        if snapshot.contains('/')
            || snapshot.contains('\\')
            || snapshot.starts_with('.')
            || !snapshot.ends_with(".snapshot")
        {
            return Err(StorageError::SnapshotNotFound {
                name: snapshot.to_string(),
            });
        }
        let path = self.snapshot_dir(name).join(snapshot);
        if !path.is_file() {
            return Err(StorageError::SnapshotNotFound {
                name: snapshot.to_string(),
            });
        }
        Ok(path)
    }

    /// Deletes a snapshot.
    pub fn delete_snapshot(&self, name: &str, snapshot: &str) -> Result<()> {
        let path = self.snapshot_path(name, snapshot)?;
        std::fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
        let _ = std::fs::remove_file(path.with_extension("snapshot.sha256"));
        Ok(())
    }

    /// Where the collections' directories are.
    pub fn collections_dir(&self) -> &Path {
        &self.collections_dir
    }

    /// Where downloaded or uploaded snapshot files may be put before recovery.
    pub fn snapshots_dir(&self) -> &Path {
        &self.snapshots_dir
    }

    /// Snapshots every collection and the aliases into one archive, while writes continue.
    /// The set of collections and the aliases are those of one moment: creates, deletes and
    /// alias changes wait while each collection's checkpoint files are linked aside.
    pub fn create_full_snapshot(&self) -> Result<SnapshotDescription> {
        let dir = &self.snapshots_dir;
        let staging = dir.join(format!(".staging-{}", unique()));
        std::fs::create_dir_all(&staging).map_err(|e| StorageError::io(&staging, e))?;
        let result = (|| {
            let files = {
                let _a = self.admin.lock();
                let mut staged = Vec::new();
                let aliases_file = staging.join("aliases");
                aliases::save(&aliases_file, &self.aliases.read())?;
                staged.push(("aliases.bin".to_string(), aliases_file));
                for c in self.all() {
                    c.with_checkpoint(|files| {
                        for (rel, path) in files {
                            let target = staging.join(format!("{}", staged.len()));
                            if std::fs::hard_link(&path, &target).is_err() {
                                std::fs::copy(&path, &target)
                                    .map_err(|e| StorageError::io(&path, e))?;
                            }
                            staged.push((format!("collections/{}/{rel}", c.name()), target));
                        }
                        Ok(())
                    })?;
                }
                staged
            };
            let file_name = format!("{FULL_SNAPSHOT_PREFIX}{}.snapshot", unix_millis());
            let out = dir.join(&file_name);
            let (checksum, size) = write_archive(&out, &files)?;
            std::fs::write(dir.join(format!("{file_name}.sha256")), &checksum)
                .map_err(|e| StorageError::io(dir, e))?;
            Ok(SnapshotDescription {
                name: file_name.clone(),
                creation_time: creation_time(&out),
                size,
                checksum: Some(checksum),
            })
        })();
        let _ = std::fs::remove_dir_all(&staging);
        result
    }

    /// The full snapshots, oldest first.
    pub fn list_full_snapshots(&self) -> Vec<SnapshotDescription> {
        let dir = &self.snapshots_dir;
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return out;
        };
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if !file.starts_with(FULL_SNAPSHOT_PREFIX)
                || !file.ends_with(".snapshot")
                || !e.path().is_file()
            {
                continue;
            }
            out.push(SnapshotDescription {
                creation_time: creation_time(&e.path()),
                size: e.metadata().map(|m| m.len()).unwrap_or(0),
                checksum: std::fs::read_to_string(dir.join(format!("{file}.sha256"))).ok(),
                name: file,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The file of a full snapshot, for download.
    pub fn full_snapshot_path(&self, snapshot: &str) -> Result<PathBuf> {
        let not_found = || StorageError::SnapshotNotFound {
            name: snapshot.to_string(),
        };
        if snapshot.contains('/')
            || snapshot.contains('\\')
            || !snapshot.starts_with(FULL_SNAPSHOT_PREFIX)
            || !snapshot.ends_with(".snapshot")
        {
            return Err(not_found());
        }
        let path = self.snapshots_dir.join(snapshot);
        if !path.is_file() {
            return Err(not_found());
        }
        Ok(path)
    }

    /// Deletes a full snapshot.
    pub fn delete_full_snapshot(&self, snapshot: &str) -> Result<()> {
        let path = self.full_snapshot_path(snapshot)?;
        std::fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
        let _ = std::fs::remove_file(path.with_extension("snapshot.sha256"));
        Ok(())
    }

    /// Restores every collection of a full snapshot, and its aliases (at start-up, before
    /// anything is served). A collection that exists is replaced when `force`, else kept
    /// as it is (and its snapshot skipped); an alias is restored when its collection exists
    /// and its name is no collection's. The archive is verified whole before anything
    /// changes. Returns the collections restored.
    pub fn recover_full(&self, archive: &Path, force: bool) -> Result<Vec<String>> {
        let _a = self.admin.lock();
        let staging = self.collections_dir.join(format!(".restore-{}", unique()));
        unpack_archive(archive, &staging)?;
        let result = (|| {
            let restored_aliases = aliases::load(&staging.join("aliases.bin"))?;
            let root = staging.join("collections");
            let mut names = Vec::new();
            if let Ok(entries) = std::fs::read_dir(&root) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    validate_collection_name(&name)?;
                    if !e.path().join("config.json").exists() {
                        return Err(StorageError::corrupt(
                            archive,
                            format!("collection {name} has no config"),
                        ));
                    }
                    names.push(name);
                }
            }
            names.sort();
            let mut restored = Vec::new();
            for name in names {
                if self.exists(&name) && !force {
                    tracing::warn!(collection = %name, "exists; kept (restore it with force)");
                    continue;
                }
                let from = root.join(&name);
                Collection::prepare_restored(&from)?;
                let dir = self.collections_dir.join(&name);
                if let Some(old) = self.collections.write().remove(&name) {
                    stop(&old);
                }
                if dir.exists() {
                    self.remove_dir(&dir)?;
                }
                std::fs::rename(&from, &dir).map_err(|e| StorageError::io(&dir, e))?;
                crate::shard::sync_dir(&self.collections_dir)?;
                let c = Collection::open(&dir, &name)?;
                self.collections.write().insert(name.clone(), c);
                restored.push(name);
            }
            let mut next = self.aliases.read().clone();
            for (alias, collection) in restored_aliases {
                if self.exists(&collection) && !self.exists(&alias) {
                    next.insert(alias, collection);
                }
            }
            aliases::save(&self.aliases_path, &next)?;
            *self.aliases.write() = next;
            Ok(restored)
        })();
        let _ = std::fs::remove_dir_all(&staging);
        result
    }

    /// Restores collection `name` from a snapshot file, replacing it if it exists. The archive
    /// is verified whole before anything changes; `checksum`, when given, must match.
    pub fn recover(&self, name: &str, archive: &Path, checksum: Option<&str>) -> Result<()> {
        validate_collection_name(name)?;
        if let Some(expected) = checksum {
            let actual = crate::archive::sha256_file(archive)?;
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(StorageError::ChecksumMismatch {
                    expected: expected.to_string(),
                    actual,
                });
            }
        }
        let _a = self.admin.lock();
        // An alias names its collection here too; resolved under the lock that alias
        // changes take, so it cannot be re-pointed meanwhile.
        let name = &self.resolve(name);
        let staging = self.collections_dir.join(format!(".restore-{}", unique()));
        unpack_archive(archive, &staging)?;
        let prepared = (|| {
            if !staging.join("config.json").exists() {
                return Err(StorageError::corrupt(
                    archive,
                    "snapshot holds no collection config",
                ));
            }
            // The restored shards get a fresh, empty log, numbering after them.
            Collection::prepare_restored(&staging)
        })();
        if let Err(e) = prepared {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        let dir = self.collections_dir.join(name);
        if let Some(old) = self.collections.write().remove(name) {
            stop(&old);
        }
        if dir.exists() {
            self.remove_dir(&dir)?;
        }
        std::fs::rename(&staging, &dir).map_err(|e| StorageError::io(&dir, e))?;
        crate::shard::sync_dir(&self.collections_dir)?;
        let c = Collection::open(&dir, name)?;
        self.collections.write().insert(name.to_string(), c);
        Ok(())
    }
}

fn stop(c: &Arc<Collection>) {
    if let Err(e) = c.close() {
        tracing::warn!(collection = c.name(), error = %e, "final flush failed");
    }
}

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn unique() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{}-{}",
        unix_millis(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

fn creation_time(path: &Path) -> Option<String> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let dt: chrono::DateTime<chrono::Utc> = modified.into();
    Some(dt.format("%Y-%m-%dT%H:%M:%S").to_string())
}
