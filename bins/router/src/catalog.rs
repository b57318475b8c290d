//! Cluster mode's catalog, kept in step with the nodes: the collections the nodes hold that
//! the coordinator's own storage does not list are added to it, with their configuration and
//! payload indexes as the first node reports them. So a coordinator started on an empty disk,
//! or a second coordinator over the same nodes, serves every collection the nodes hold.
//!
//! Collections sharded by key (`sharding_method: custom`) are found through their keys:
//! each key's collection on its nodes (`name@key`) carries a marker naming the collection,
//! the key and the key's nodes, and every node is listed for them.
//!
//! Only collections laid out as this cluster places points are served: each node's copy
//! carries a marker (`shard k of n`) written when a cluster router created it. At start-up
//! every collection, listed already or found, is checked against the node list, and a
//! mismatch (nodes listed in another order or number) stops the router: writes would land
//! where no read looks. A collection a node cannot describe (a node failing meanwhile)
//! waits, unplaced: its requests answer 503 until a later check places it; one the first
//! node holds without a marker is the node's own (a Qdrant server's other collections), left
//! alone. The start-up check runs once every node answers (a router started with a node down
//! loads its catalog then, answering the collections' requests 503 until it has: it cannot
//! tell a collection from none, nor a shard key from one missing). Every 10 s, collections
//! created meanwhile through another coordinator, and those not placed yet, are checked and
//! added; one that fails a check then is left out, with a warning.

use crate::AppState;
use qdrant_client::qdrant as pb;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Checks and imports; at start-up (`startup`) a collection that fails a check is an error,
/// later it is skipped with a warning. The names added.
pub(crate) async fn import(state: &Arc<AppState>, startup: bool) -> Result<Vec<String>, String> {
    let Some(cluster) = state.cluster().cloned() else {
        return Ok(Vec::new());
    };
    let node = &cluster.nodes()[0];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut names = node
        .list_collections(deadline)
        .await
        .map_err(|e| format!("cannot list the collections of node {}: {e}", node.url()))?;
    // A shard key's collection on a node is not a collection of its own: the keys are
    // imported below.
    names.retain(|n| !n.contains(shard_router::remote::keys::KEY_SEPARATOR));
    if startup {
        // The catalog's own collections are checked too (a node list changed since); those
        // sharded by key are noted as such (their keys are found on the nodes below).
        for name in state.storage.list() {
            let keyed = state
                .storage
                .get(&name)
                .ok()
                .map(|c| c.config())
                .filter(|cfg| cfg.sharding_method.as_deref() == Some("custom"));
            if let Some(cfg) = keyed {
                cluster.add_keyed(&name, cfg.shard_region_field.is_some());
            } else if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let mut added = Vec::new();
    for name in names {
        if cluster.is_keyed(&name) {
            continue;
        }
        let known = state.storage.get(&name).is_ok();
        // Later, a collection known already is checked again only while its layout is not
        // (its nodes could not be read before).
        if known && !startup && cluster.is_hash_registered(&name) {
            continue;
        }
        let checked = cluster.placed_collection(&name, deadline).await;
        let (info, layout) = match checked {
            Ok(found) => found,
            Err(e @ shard_router::remote::PlacementError::Misplaced(_)) if startup => {
                return Err(format!("collection `{name}`: {e}"))
            }
            // A collection of the node's own (not made through a cluster router): left
            // alone, said once.
            Err(e @ shard_router::remote::PlacementError::Foreign(_)) => {
                if startup {
                    tracing::warn!(collection = %name, error = %e, "a collection on the first node is not the cluster's: not served");
                }
                continue;
            }
            Err(e) => {
                if startup {
                    cluster.note_unplaced_at_start(&name);
                }
                tracing::warn!(collection = %name, error = %e, "a collection on the nodes is not served");
                continue;
            }
        };
        // A resharding under way is resumed by a coordinator starting up only (or later, when
        // its nodes could not be read then): found otherwise, it is another coordinator's,
        // running; this one would move points behind it.
        let resumable = cluster.take_unplaced_at_start(&name) || startup;
        if layout.resharding.is_some() && !resumable {
            tracing::warn!(collection = %name, "a collection on the nodes is being resharded by another coordinator: served here once it is done, after a restart");
            continue;
        }
        // Its layout (a resharding under way resumed, its new shard made like the others).
        let template = template_of(&name, &info);
        if let Err(e) = cluster.register_hashed(&name, layout, template.as_ref().ok().cloned()) {
            tracing::warn!(collection = %name, error = %e, template = ?template.err(), "a collection on the nodes is not served");
            continue;
        }
        if known {
            continue;
        }
        match add(state, &name, &info, None).await {
            Ok(true) => {
                tracing::info!(collection = %name, "collection found on the nodes, added to the catalog");
                added.push(name);
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(collection = %name, error = %e, "a collection on the nodes is not served")
            }
        }
    }
    // Shard keys: every node is listed, since a key's group may leave out any node.
    let scan = cluster.scan_keys(deadline).await;
    for w in &scan.warnings {
        tracing::warn!(warning = %w, "a shard key on the nodes is not served");
    }
    if let (true, Some(m)) = (startup, scan.misplaced.first()) {
        return Err(m.clone());
    }
    for m in &scan.misplaced {
        tracing::warn!(warning = %m, "a shard key on the nodes is not served");
    }
    let mut new_keyed: Vec<String> = Vec::new();
    for f in &scan.found {
        let name = &f.collection;
        if cluster.is_keyed(name) || new_keyed.contains(name) {
            continue;
        }
        // Not while a key is created or deleted: the scan may have read it half done.
        if !cluster.scan_is_current(&scan) {
            break;
        }
        if let Ok(c) = state.storage.get(name) {
            if c.config().sharding_method.as_deref() != Some("custom") {
                tracing::warn!(collection = %name, key = %f.key, "a shard key on the nodes names a collection the catalog holds sharded by hash: not served");
                continue;
            }
        }
        match add(
            state,
            name,
            &f.info,
            Some((f.shard_number, f.field.clone(), f.region_field.clone())),
        )
        .await
        {
            Ok(true) => {
                tracing::info!(collection = %name, "collection sharded by key found on the nodes, added to the catalog");
                added.push(name.clone());
                new_keyed.push(name.clone());
            }
            // Created meanwhile: keyed only when it was created so.
            Ok(false) => {
                let custom = state
                    .storage
                    .get(name)
                    .is_ok_and(|c| c.config().sharding_method.as_deref() == Some("custom"));
                if custom {
                    new_keyed.push(name.clone());
                }
            }
            Err(e) => {
                tracing::warn!(collection = %name, error = %e, "a collection on the nodes is not served");
            }
        }
    }
    if cluster.apply_scan(&scan, &new_keyed) {
        for f in &scan.found {
            tracing::info!(collection = %f.collection, key = %f.key, nodes = ?f.group, "shard key found on the nodes");
            state.cache.invalidate(&f.collection);
        }
        for (collection, key) in &scan.gone {
            tracing::info!(collection = %collection, key = %key, "shard key gone from the nodes");
            state.cache.invalidate(collection);
        }
        for f in &scan.changed {
            tracing::info!(collection = %f.collection, key = %f.key, nodes = ?f.group, "shard key made again on the nodes with another group or region");
            state.cache.invalidate(&f.collection);
        }
    }
    Ok(added)
}

/// Adds one collection to the catalog from its description; false when it was created
/// meanwhile. A configuration cluster mode would refuse to create is refused here too.
/// `keyed`: the collection is sharded by key (with these `shard_number`, `shard_key_field`
/// and `shard_region_field` settings), and `info` describes one of its keys' node
/// collections.
async fn add(
    state: &Arc<AppState>,
    name: &str,
    info: &pb::CollectionInfo,
    keyed: Option<(Option<u32>, Option<String>, Option<String>)>,
) -> Result<bool, String> {
    let mut config = config_of(info)?;
    match keyed {
        None => {
            shard_router::remote::wire::create_collection(name, &config)?;
        }
        Some((shard_number, field, region_field)) => {
            config.sharding_method = Some("custom".into());
            config.shard_number = shard_number;
            config.shard_key_field = field;
            config.shard_region_field = region_field;
            let node_config = shard_router::remote::key_config(&config);
            shard_router::remote::wire::create_collection(name, &node_config)?;
        }
    }
    let indexes = indexes_of(info);
    let st = state.clone();
    let n = name.to_string();
    tokio::task::spawn_blocking(move || {
        let c = match st.storage.create(&n, config) {
            Ok(c) => c,
            Err(e) if e.kind() == storage::StorageErrorKind::Conflict => return Ok(false),
            Err(e) => return Err(e.to_string()),
        };
        for (field, schema) in indexes {
            c.create_payload_index(&field, schema)
                .map_err(|e| e.to_string())?;
        }
        Ok(true)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A collection's configuration as a node describes it, without the node's marker.
fn config_of(info: &pb::CollectionInfo) -> Result<storage::CollectionConfig, String> {
    let body = crate::grpc::collections::create_json_of_info(info).map_err(|e| e.message)?;
    let mut config: storage::CollectionConfig =
        serde_json::from_value(body).map_err(|e| e.to_string())?;
    // The marker is the nodes' business, not the user's metadata.
    if let Some(serde_json::Value::Object(m)) = &mut config.metadata {
        m.remove(shard_router::remote::SHARD_MARKER);
        if m.is_empty() {
            config.metadata = None;
        }
    }
    Ok(config)
}

/// A collection's payload indexes as a node describes them: (field, schema name).
fn indexes_of(info: &pb::CollectionInfo) -> Vec<(String, serde_json::Value)> {
    info.payload_schema
        .iter()
        .filter_map(|(field, schema)| {
            let kind = pb::PayloadSchemaType::try_from(schema.data_type).ok()?;
            let kind = kind.as_str_name().to_ascii_lowercase();
            (kind != "unknowntype").then(|| (field.clone(), serde_json::json!(kind)))
        })
        .collect()
}

/// What a resharding of hash-placed collection `name` makes its new shard from, as a node
/// describes the collection.
fn template_of(
    name: &str,
    info: &pb::CollectionInfo,
) -> Result<shard_router::remote::ShardTemplate, String> {
    let config = config_of(info)?;
    let indexes = indexes_of(info)
        .into_iter()
        .filter_map(|(field, kind)| {
            let kind = payload::FieldSchema::from_json(&kind).ok()?;
            Some((field, crate::api::collections::field_type_pb(kind)))
        })
        .collect();
    Ok(shard_router::remote::ShardTemplate {
        create: shard_router::remote::wire::create_collection(name, &config)?,
        indexes,
    })
}
