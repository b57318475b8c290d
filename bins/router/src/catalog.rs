//! Cluster mode's catalog, kept in step with the nodes: the collections the first node holds
//! that the coordinator's own storage does not list are added to it, with their configuration
//! and payload indexes as that node reports them. So a coordinator started on an empty disk,
//! or a second coordinator over the same nodes, serves every collection the nodes hold.
//! Checked at start-up and then every few seconds.

use crate::AppState;
use qdrant_client::qdrant as pb;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Adds to the catalog the collections node 0 holds and it lacks; their names.
pub(crate) async fn import(state: &Arc<AppState>) -> Result<Vec<String>, String> {
    let Some(cluster) = state.cluster() else {
        return Ok(Vec::new());
    };
    let node = &cluster.nodes()[0];
    let deadline = Instant::now() + Duration::from_secs(10);
    let names = node
        .list_collections(deadline)
        .await
        .map_err(|e| format!("cannot list the collections of node {}: {e}", node.url()))?;
    let mut added = Vec::new();
    for name in names {
        if state.storage.get(&name).is_ok() {
            continue;
        }
        let info = node
            .collection_info(&name, deadline)
            .await
            .map_err(|e| format!("cannot describe `{name}` on node {}: {e}", node.url()))?;
        let body = crate::grpc::collections::create_json_of_info(&info)
            .map_err(|e| format!("`{name}` on node {}: {}", node.url(), e.message))?;
        let config: storage::CollectionConfig = serde_json::from_value(body)
            .map_err(|e| format!("`{name}` on node {}: {e}", node.url()))?;
        let indexes: Vec<(String, serde_json::Value)> = info
            .payload_schema
            .iter()
            .filter_map(|(field, schema)| {
                let kind = pb::PayloadSchemaType::try_from(schema.data_type).ok()?;
                let kind = kind.as_str_name().to_ascii_lowercase();
                (kind != "unknowntype").then(|| (field.clone(), serde_json::json!(kind)))
            })
            .collect();
        let st = state.clone();
        let n = name.clone();
        let created = tokio::task::spawn_blocking(move || {
            let c = match st.storage.create(&n, config) {
                Ok(c) => c,
                // Created meanwhile (through this coordinator): nothing to add.
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
        .map_err(|e| e.to_string())??;
        if created {
            tracing::info!(collection = %name, node = node.url(), "collection found on the nodes, added to the catalog");
            added.push(name);
        }
    }
    Ok(added)
}
