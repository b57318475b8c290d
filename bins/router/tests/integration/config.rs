//! Configuration sources: a TOML file, Qdrant's environment variables, and `--help`.

use crate::common::{router_command, DataDirs, Router};
use serde_json::json;

async fn create_and_check(r: &Router, storage: &std::path::Path) {
    r.create("cfg", json!({"vectors": {"size": 2, "distance": "Dot"}}))
        .await;
    assert_eq!(
        r.get("/collections/cfg/exists").await,
        json!({"exists": true})
    );
    let entries = std::fs::read_dir(storage)
        .unwrap_or_else(|e| panic!("{}: {e}", storage.display()))
        .count();
    assert!(entries > 0, "nothing written under {}", storage.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toml_file() {
    let dirs = DataDirs::new();
    let storage = dirs.root().join("from-toml");
    let file = dirs.root().join("router.toml");
    std::fs::write(
        &file,
        format!(
            "[service]\nhttp_port = 0\napi_key = \"tomlkey\"\n\n[storage]\nstorage_path = {:?}\nsnapshots_path = {:?}\n\n[cache]\nttl_secs = 0\n\n[log]\nlevel = \"warn\"\n",
            storage.display().to_string(),
            dirs.snapshots().display().to_string()
        ),
    )
    .unwrap();
    let mut cmd = router_command();
    cmd.arg("--config").arg(&file);
    let r = Router::spawn(cmd, &dirs.log());
    // The key from the file is enforced.
    let (status, _) = r.call(reqwest::Method::GET, "/collections", None).await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
    let r = r.with_key("tomlkey");
    create_and_check(&r, &storage).await;
    assert!(!dirs.storage().exists(), "the default path was used");

    // Unknown keys in the file are an error before anything binds.
    let bad = dirs.root().join("bad.toml");
    std::fs::write(&bad, "[service]\nhttp_prot = 0\n").unwrap();
    let out = router_command().arg("--config").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("http_prot"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qdrant_environment_variables() {
    let dirs = DataDirs::new();
    let storage = dirs.root().join("from-env");
    let mut cmd = router_command();
    cmd.env("QDRANT__SERVICE__HTTP_PORT", "0")
        .env("QDRANT__STORAGE__STORAGE_PATH", &storage)
        .env("QDRANT__STORAGE__SNAPSHOTS_PATH", dirs.snapshots())
        .args(["--log-level", "warn"]);
    let r = Router::spawn(cmd, &dirs.log());
    create_and_check(&r, &storage).await;
}

#[test]
fn help_lists_every_flag() {
    let out = router_command().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--host",
        "--http-port",
        "--grpc-port",
        "--api-key",
        "--read-only-api-key",
        "--storage-path",
        "--snapshots-path",
        "--max-request-size-mb",
        "--max-concurrent-requests",
        "--request-timeout-secs",
        "--search-threads",
        "--cache-ttl-secs",
        "--cache-max-mb",
        "--log-level",
        "--log-json",
        "--shutdown-grace-secs",
        "--max-connections",
        "--max-connections-per-address",
        "--header-read-timeout-secs",
        "--write-timeout-secs",
        "--cluster-nodes",
        "--cluster-api-key",
        "--cluster-partial-answers",
        "--cluster-call-timeout-ms",
        "--help",
        "--version",
    ] {
        assert!(help.contains(flag), "--help does not list {flag}:\n{help}");
    }
}
