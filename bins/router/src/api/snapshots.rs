//! Snapshots: create, list, download, delete, recover (from a file under the snapshots
//! directory, an upload, or an http(s) URL on an allowed host); full snapshots of every
//! collection.

use super::{accepted, ok, ApiResult, Body, Params};
use crate::error::ApiError;
use crate::model::{self, ManageParams, SnapshotRecover, UploadParams};
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
    state.local_only("snapshots are")?;
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
    state.local_only("snapshots are")?;
    let start = Instant::now();
    let list = state.storage.list_snapshots(&name)?;
    Ok(ok(start, &list))
}

pub async fn remove(
    State(state): State<Arc<AppState>>,
    Path((name, snapshot)): Path<(String, String)>,
    _params: Params<ManageParams>,
) -> ApiResult {
    state.local_only("snapshots are")?;
    let start = Instant::now();
    state.storage.delete_snapshot(&name, &snapshot)?;
    Ok(ok(start, &true))
}

pub async fn download(
    State(state): State<Arc<AppState>>,
    Path((name, snapshot)): Path<(String, String)>,
) -> ApiResult {
    state.local_only("snapshots are")?;
    let path = state.storage.snapshot_path(&name, &snapshot)?;
    stream_file(&path, &snapshot).await
}

/// A snapshot file as the answer, streamed.
async fn stream_file(path: &std::path::Path, snapshot: &str) -> ApiResult {
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
    state.local_only("snapshots are")?;
    let start = Instant::now();
    let wait = model::Flag::or(params.wait, true);
    let location = body.location.as_str();
    let path = if let Some(p) = location.strip_prefix("file://") {
        std::path::PathBuf::from(p)
    } else if location.starts_with("http://") || location.starts_with("https://") {
        let url = reqwest::Url::parse(location)
            .map_err(|e| ApiError::bad_request(format!("Bad request: location: {e}")))?;
        if host_allowed(&url, &state.snapshot_allowed_hosts) {
            let st = state.clone();
            let checksum = body.checksum.clone();
            let api_key = body.api_key.clone();
            let task = async move {
                let file = download_snapshot(&st, url, api_key.as_deref()).await?;
                recover_file(st, name, file, checksum, true).await
            };
            return finish_recovery(start, wait, task).await;
        }
        // This server's own download URL: resolved here, not fetched.
        let own = url
            .path_segments()
            .map(|s| s.collect::<Vec<_>>())
            .and_then(|segs| match segs.as_slice() {
                ["collections", source, "snapshots", file] => {
                    Some((percent_decode(source), percent_decode(file)))
                }
                _ => None,
            });
        match own.and_then(|(source, file)| state.storage.snapshot_path(&source, &file).ok()) {
            Some(path) => path,
            None => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "Forbidden: host {} is not among the hosts snapshots may be downloaded from (--snapshot-allowed-hosts)",
                        url.host_str().unwrap_or("")
                    ),
                ))
            }
        }
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
    let task = recover_file(state.clone(), name, real, body.checksum, false);
    finish_recovery(start, wait, task).await
}

/// Awaits a recovery (`wait`), or answers 202 at once and lets it run, logging a failure.
async fn finish_recovery(
    start: Instant,
    wait: bool,
    task: impl std::future::Future<Output = Result<(), ApiError>> + Send + 'static,
) -> ApiResult {
    if !wait {
        tokio::spawn(async move {
            if let Err(e) = task.await {
                tracing::error!(error = %e.message, "snapshot recovery failed");
            }
        });
        return Ok(accepted(start));
    }
    task.await?;
    Ok(ok(start, &true))
}

/// Recovers collection `name` from the archive at `file` (removed afterwards when
/// `remove`: an upload or a download), then drops what was cached of it.
async fn recover_file(
    state: Arc<AppState>,
    name: String,
    file: std::path::PathBuf,
    checksum: Option<String>,
    remove: bool,
) -> Result<(), ApiError> {
    if let Err(e) = state.not_on_replica("recovering a collection from a snapshot is") {
        if remove {
            let _ = std::fs::remove_file(&file);
        }
        return Err(e);
    }
    tokio::task::spawn_blocking(move || {
        let r = state.storage.recover(&name, &file, checksum.as_deref());
        if remove {
            let _ = std::fs::remove_file(&file);
        }
        // What was replaced: the collection itself, or the one `name` is an alias of.
        let replaced = state.storage.resolve(&name);
        state.cache.invalidate(&replaced);
        state.shards.forget(&replaced);
        r
    })
    .await
    .map_err(internal)??;
    Ok(())
}

/// Whether `url`'s host (any port) or `host:port` is in `allowed`.
fn host_allowed(url: &reqwest::Url, allowed: &[String]) -> bool {
    let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
        return false;
    };
    let with_port = url
        .port_or_known_default()
        .map(|p| format!("{host}:{p}"))
        .unwrap_or_default();
    allowed.iter().any(|a| *a == host || *a == with_port)
}

/// The client snapshot downloads go through: redirects only to allowed hosts (checked again
/// by the caller's list at each hop), at most 5 of them; `ca_file` adds trusted roots.
pub fn snapshot_client(
    ca_file: Option<&std::path::Path>,
    allowed: &[String],
) -> Result<reqwest::Client, String> {
    let allowed = allowed.to_vec();
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                attempt.error("more than 5 redirects")
            } else if host_allowed(attempt.url(), &allowed) {
                attempt.follow()
            } else {
                attempt.error("redirected to a host not allowed")
            }
        }))
        .connect_timeout(std::time::Duration::from_secs(10));
    if let Some(path) = ca_file {
        let pem =
            std::fs::read(path).map_err(|e| format!("snapshot CA file {}: {e}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("snapshot CA file {}: {e}", path.display()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| e.to_string())
}

/// Downloads a snapshot into the snapshots directory (at most the upload limit), returning
/// the file.
async fn download_snapshot(
    state: &AppState,
    url: reqwest::Url,
    api_key: Option<&str>,
) -> Result<std::path::PathBuf, ApiError> {
    use futures::StreamExt;
    let failed = |e: String| {
        ApiError::bad_request(format!("Bad request: cannot download the snapshot: {e}"))
    };
    let mut request = state.http_client.get(url.clone());
    if let Some(key) = api_key {
        request = request.header("api-key", key);
    }
    let response = request.send().await.map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("{url} answered {}", response.status())));
    }
    let mut body = response.bytes_stream();
    let mut sink = Incoming::create(state).await?;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| failed(e.to_string()))?;
        sink.write(&chunk, state.max_upload_bytes).await?;
    }
    sink.finish().await
}

/// A snapshot file being received (uploaded or downloaded) under `<snapshots>/.incoming/`;
/// removed if dropped before [`Incoming::finish`].
struct Incoming {
    path: std::path::PathBuf,
    file: Option<tokio::fs::File>,
    written: u64,
}

impl Incoming {
    async fn create(state: &AppState) -> Result<Incoming, ApiError> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = state.storage.snapshots_dir().join(".incoming");
        tokio::fs::create_dir_all(&dir).await.map_err(internal)?;
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("{}-{n}.snapshot", std::process::id()));
        let file = tokio::fs::File::create(&path).await.map_err(internal)?;
        Ok(Incoming {
            path,
            file: Some(file),
            written: 0,
        })
    }

    async fn write(&mut self, chunk: &[u8], limit: u64) -> Result<(), ApiError> {
        use tokio::io::AsyncWriteExt;
        self.written += chunk.len() as u64;
        if self.written > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Bad request: the snapshot is larger than the limit of {limit} bytes"),
            ));
        }
        let file = self.file.as_mut().expect("open until finished");
        file.write_all(chunk).await.map_err(internal)
    }

    async fn finish(mut self) -> Result<std::path::PathBuf, ApiError> {
        use tokio::io::AsyncWriteExt;
        let mut file = self.file.take().expect("open until finished");
        file.flush().await.map_err(internal)?;
        file.sync_all().await.map_err(internal)?;
        Ok(std::mem::take(&mut self.path))
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `POST /collections/{name}/snapshots/upload`: a snapshot file sent as the multipart field
/// `snapshot`, streamed to disk (at most `--max-snapshot-upload-mb`), checked against
/// `checksum` when given, and recovered as collection `name`.
pub async fn upload(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<UploadParams>,
    mut multipart: axum::extract::Multipart,
) -> ApiResult {
    state.local_only("snapshots are")?;
    let start = Instant::now();
    let wait = model::Flag::or(params.wait, true);
    storage::validate_collection_name(&name)?;
    let bad_form = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request(format!("Bad request: multipart body: {}", e.body_text()))
    };
    let mut received = None;
    while let Some(mut field) = multipart.next_field().await.map_err(bad_form)? {
        if field.name() != Some("snapshot") {
            continue;
        }
        if received.is_some() {
            return Err(ApiError::bad_request(
                "Bad request: send one `snapshot` file per upload",
            ));
        }
        let mut sink = Incoming::create(&state).await?;
        while let Some(chunk) = field.chunk().await.map_err(bad_form)? {
            sink.write(&chunk, state.max_upload_bytes).await?;
        }
        received = Some(sink.finish().await?);
    }
    let Some(file) = received else {
        return Err(ApiError::bad_request(
            "Bad request: the multipart field `snapshot` (the file) is required",
        ));
    };
    let task = recover_file(state.clone(), name, file, params.checksum, true);
    finish_recovery(start, wait, task).await
}

/// `POST /snapshots`: a full snapshot (every collection and the aliases).
pub async fn create_full(
    State(state): State<Arc<AppState>>,
    Params(params): Params<ManageParams>,
) -> ApiResult {
    state.local_only("snapshots are")?;
    let start = Instant::now();
    let wait = model::Flag::or(params.wait, true);
    let st = state.clone();
    let task = tokio::task::spawn_blocking(move || st.storage.create_full_snapshot());
    if !wait {
        tokio::spawn(async move {
            if let Ok(Err(e)) = task.await {
                tracing::error!(error = %e, "full snapshot failed");
            }
        });
        return Ok(accepted(start));
    }
    let desc = task.await.map_err(internal)??;
    Ok(ok(start, &desc))
}

/// `GET /snapshots`.
pub async fn list_full(State(state): State<Arc<AppState>>) -> ApiResult {
    state.local_only("snapshots are")?;
    let start = Instant::now();
    Ok(ok(start, &state.storage.list_full_snapshots()))
}

/// `GET /snapshots/{snapshot}`.
pub async fn download_full(
    State(state): State<Arc<AppState>>,
    Path(snapshot): Path<String>,
) -> ApiResult {
    state.local_only("snapshots are")?;
    let path = state.storage.full_snapshot_path(&snapshot)?;
    stream_file(&path, &snapshot).await
}

/// `DELETE /snapshots/{snapshot}`.
pub async fn remove_full(
    State(state): State<Arc<AppState>>,
    Path(snapshot): Path<String>,
    _params: Params<ManageParams>,
) -> ApiResult {
    state.local_only("snapshots are")?;
    let start = Instant::now();
    state.storage.delete_full_snapshot(&snapshot)?;
    Ok(ok(start, &true))
}

/// `%XX` escapes of a URL path segment decoded.
fn percent_decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
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
