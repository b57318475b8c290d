//! Collection aliases: other names under which a collection is served, changed atomically,
//! kept in one file beside the collections.
//!
//! The rules are Qdrant's (as its Python client's local mode applies them): an alias points
//! at a collection, never at another alias; it may not take a collection's name, nor a
//! collection an alias's; creating an alias that exists re-points it; deleting one that does
//! not exist does nothing; renaming one that does not exist is an error; deleting a
//! collection deletes its aliases. A list of changes is applied to a copy, written, and only
//! then made visible: a rejected change leaves every alias as it was.
//!
//! # File format (`<storage>/aliases.bin`, little-endian)
//!
//! ```text
//! magic   "VRALIAS\0"                 8 bytes
//! version u32 = 1
//! count   u32                         number of aliases
//! count × { alias_len u32, alias UTF-8, collection_len u32, collection UTF-8 }
//! crc32   u32                         CRC-32 (IEEE) of everything before it
//! ```
//!
//! Replaced atomically (`persist::replace_file`); a missing file is no aliases.

use crate::{Result, StorageError};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

const MAGIC: [u8; 8] = *b"VRALIAS\0";
const VERSION: u32 = 1;

/// The most aliases one server holds.
pub const MAX_ALIASES: usize = 10_000;

/// One change of [`crate::Storage::change_aliases`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasChange {
    /// `alias` names `collection` (re-pointed if it named another).
    Create {
        /// The collection.
        collection: String,
        /// The new name.
        alias: String,
    },
    /// `alias` no longer exists (nothing happens if it did not).
    Delete {
        /// The alias.
        alias: String,
    },
    /// `old` is now called `new`.
    Rename {
        /// The alias.
        old: String,
        /// Its new name.
        new: String,
    },
}

/// Alias → collection.
pub(crate) type AliasMap = BTreeMap<String, String>;

/// `aliases` with `changes` applied, checked against the collections that exist.
pub(crate) fn applied(
    aliases: &AliasMap,
    changes: &[AliasChange],
    is_collection: impl Fn(&str) -> bool,
) -> Result<AliasMap> {
    let mut out = aliases.clone();
    let taken = |name: &str| -> Result<()> {
        crate::validate_collection_name(name)?;
        if is_collection(name) {
            return Err(StorageError::CollectionExists {
                name: name.to_string(),
            });
        }
        Ok(())
    };
    for change in changes {
        match change {
            AliasChange::Create { collection, alias } => {
                if !is_collection(collection) {
                    return Err(StorageError::CollectionNotFound {
                        name: collection.clone(),
                    });
                }
                taken(alias)?;
                out.insert(alias.clone(), collection.clone());
            }
            AliasChange::Delete { alias } => {
                out.remove(alias);
            }
            AliasChange::Rename { old, new } => {
                taken(new)?;
                let Some(collection) = out.remove(old) else {
                    return Err(StorageError::NotFound(format!(
                        "alias `{old}` does not exist"
                    )));
                };
                out.insert(new.clone(), collection);
            }
        }
    }
    if out.len() > MAX_ALIASES {
        return Err(StorageError::InvalidInput(format!(
            "at most {MAX_ALIASES} aliases"
        )));
    }
    Ok(out)
}

/// Writes `aliases` to `path`, replacing it atomically.
pub(crate) fn save(path: &Path, aliases: &AliasMap) -> Result<()> {
    persist::replace_file(path, |file| {
        let mut out = persist::ChecksumWriter::new(file);
        out.write_all(&MAGIC)?;
        out.u32(VERSION)?;
        out.u32(aliases.len() as u32)?;
        for (alias, collection) in aliases {
            for s in [alias, collection] {
                out.u32(s.len() as u32)?;
                out.write_all(s.as_bytes())?;
            }
        }
        out.finish().map(|_| ())
    })
    .map_err(|e| StorageError::io(path, e))
}

/// Reads the aliases of `path` (none when it does not exist).
pub(crate) fn load(path: &Path) -> Result<AliasMap> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AliasMap::new()),
        Err(e) => return Err(StorageError::io(path, e)),
    };
    let body = persist::check_frame(&bytes, &MAGIC, VERSION)
        .map_err(|e| StorageError::corrupt(path, e.to_string()))?;
    let mut r = persist::Cursor::new(body, 12);
    let truncated = |at: usize| StorageError::corrupt(path, format!("truncated at byte {at}"));
    let count = r.u32().ok_or_else(|| truncated(r.position()))? as usize;
    let mut out = AliasMap::new();
    for _ in 0..count {
        let mut name = || -> Result<String> {
            let at = r.position();
            let len = r.u32().ok_or_else(|| truncated(at))? as usize;
            let raw = r.bytes(len).ok_or_else(|| truncated(at))?;
            String::from_utf8(raw.to_vec()).map_err(|_| {
                StorageError::corrupt(path, format!("a name at byte {at} is not UTF-8"))
            })
        };
        let alias = name()?;
        let collection = name()?;
        out.insert(alias, collection);
    }
    if r.remaining() != 0 {
        return Err(StorageError::corrupt(
            path,
            format!("{} bytes after the last alias", r.remaining()),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(c: &str, a: &str) -> AliasChange {
        AliasChange::Create {
            collection: c.into(),
            alias: a.into(),
        }
    }

    #[test]
    fn changes_follow_qdrants_rules_and_apply_all_or_nothing() {
        let is_collection = |n: &str| n == "c1" || n == "c2";
        let a = applied(
            &AliasMap::new(),
            &[create("c1", "x"), create("c2", "y")],
            is_collection,
        )
        .unwrap();
        assert_eq!(a.get("x").map(String::as_str), Some("c1"));
        // Re-pointing, renaming, deleting a missing alias.
        let b = applied(
            &a,
            &[
                create("c2", "x"),
                AliasChange::Rename {
                    old: "y".into(),
                    new: "z".into(),
                },
                AliasChange::Delete {
                    alias: "nope".into(),
                },
            ],
            is_collection,
        )
        .unwrap();
        assert_eq!(b.get("x").map(String::as_str), Some("c2"));
        assert_eq!(b.get("z").map(String::as_str), Some("c2"));
        assert!(!b.contains_key("y"));
        // An alias of an alias, a collection's name, a missing rename: refused.
        assert!(applied(&a, &[create("x", "w")], is_collection).is_err());
        assert!(applied(&a, &[create("c1", "c2")], is_collection).is_err());
        let missing = AliasChange::Rename {
            old: "nope".into(),
            new: "w".into(),
        };
        assert!(applied(&a, &[create("c1", "w2"), missing], is_collection).is_err());
    }

    #[test]
    fn the_file_round_trips_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aliases.bin");
        assert!(load(&path).unwrap().is_empty());
        let mut a = AliasMap::new();
        a.insert("ünï".into(), "c1".into());
        a.insert("b".into(), "c2".into());
        save(&path, &a).unwrap();
        assert_eq!(load(&path).unwrap(), a);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[14] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(load(&path).is_err());
    }
}
