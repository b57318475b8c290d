//! Snapshots: create, list, download, delete, recover.

use super::{accepted, ok, ApiResult, Body, Params};
use crate::error::ApiError;
use crate::model::{self, ManageParams, SnapshotRecover};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use std::sync::Arc;
use std::time::Instant;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("Service internal error: {e}"),
    )
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ManageParams>,
) -> ApiResult {
    let start = Instant::now();
    let wait = model::Flag::or(params.wait, true);
    state.storage.get(&name)?;
    let st = state.clone();
    let task = tokio::task::spawn_blocking(move || st.storage.create_snapshot(&name));
    if !wait {
        tokio::spawn(async move {
            if let Ok(Err(e)) = task.await {
                tracing::error!(error = %e, "snapshot failed");
            }
        });
        return Ok(accepted(start));
    }
    let desc = task.await.map_err(internal)??;
    Ok(ok(start, &desc))
}

pub async fn list(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    let start = Instant::now();
    let list = state.storage.list_snapshots(&name)?;
    Ok(ok(start, &list))
}

pub async fn remove(
    State(state): State<Arc<AppState>>,
    Path((name, snapshot)): Path<(String, String)>,
    _params: Params<ManageParams>,
) -> ApiResult {
    let start = Instant::now();
    state.storage.delete_snapshot(&name, &snapshot)?;
    Ok(ok(start, &true))
}

pub async fn download(
    State(state): State<Arc<AppState>>,
    Path((name, snapshot)): Path<(String, String)>,
) -> ApiResult {
    let path = state.storage.snapshot_path(&name, &snapshot)?;
    let file = tokio::fs::File::open(&path).await.map_err(internal)?;
    let len = file.metadata().await.map_err(internal)?.len();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{snapshot}\""),
        )
        .body(axum::body::Body::from_stream(stream))
        .expect("valid response"))
}

pub async fn recover(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ManageParams>,
    Body(body): Body<SnapshotRecover>,
) -> ApiResult {
    let start = Instant::now();
    let wait = model::Flag::or(params.wait, true);
    let location = body.location.as_str();
    let path = if let Some(p) = location.strip_prefix("file://") {
        std::path::PathBuf::from(p)
    } else if location.starts_with("http://") || location.starts_with("https://") {
        // Our own download URL: resolve it locally instead of fetching over the network.
        let marker = "/snapshots/";
        let tail = location.rsplit_once(marker).map(|(_, t)| t).unwrap_or("");
        let source = location
            .split("/collections/")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .unwrap_or("");
        if tail.is_empty() || source.is_empty() {
            return Err(ApiError::not_implemented(
                "recovering from a remote URL is not supported; use file://",
            ));
        }
        state.storage.snapshot_path(source, tail)?
    } else {
        std::path::PathBuf::from(location)
    };
    // Only files under the snapshots directory may be read, so the endpoint cannot be used
    // to read arbitrary files of the server.
    let root = state
        .storage
        .snapshots_dir()
        .canonicalize()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let forbidden = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden: snapshots can only be recovered from the server's snapshots directory",
        )
    };
    // Decided before the file's existence is looked at: otherwise "not found" against
    // "forbidden" would tell a client which files exist anywhere on the server.
    if !deepest_existing_under(&path, &root) {
        return Err(forbidden());
    }
    let real = path.canonicalize().map_err(|_| {
        ApiError::not_found(format!("Snapshot file {} does not exist", path.display()))
    })?;
    // A link inside the directory may still point out of it.
    if !real.starts_with(&root) {
        return Err(forbidden());
    }
    let checksum = body.checksum;
    let st = state.clone();
    let task = tokio::task::spawn_blocking(move || {
        let r = st.storage.recover(&name, &real, checksum.as_deref());
        // What was replaced: the collection itself, or the one `name` is an alias of.
        let replaced = st.storage.resolve(&name);
        st.cache.invalidate(&replaced);
        st.shards.forget(&replaced);
        r
    });
    if !wait {
        tokio::spawn(async move {
            if let Ok(Err(e)) = task.await {
                tracing::error!(error = %e, "snapshot recovery failed");
            }
        });
        return Ok(accepted(start));
    }
    task.await.map_err(internal)??;
    Ok(ok(start, &true))
}

/// Whether the deepest ancestor of `path` that exists (the path itself when it does) resolves
/// to a place under `root` (canonical).
fn deepest_existing_under(path: &std::path::Path, root: &std::path::Path) -> bool {
    let mut at = Some(path);
    while let Some(p) = at {
        if let Ok(real) = p.canonicalize() {
            return real.starts_with(root);
        }
        at = p.parent();
    }
    false
}
