//! The HTTP floor of this machine: the CPU a bare server spends per request, to read the
//! router's own figure for `GET /` against (`benches/server_cpu.py` measures both the same
//! way, from `/proc/<pid>/stat` around requests sent one after another over one keep-alive
//! connection).
//!
//! Two servers, each on a 2-worker tokio runtime as the router's, answering every request
//! with a 31-byte JSON body and nothing else: no middleware, no logging, no metrics.
//! - `hyper`: a hyper 1 HTTP/1.1 connection per accepted socket, `TCP_NODELAY` on;
//! - `axum`: `axum::serve` with one route, the router's framework without its layers.
//!
//! What a bare server costs per request here is the cost of the kernel's loopback send and
//! receive, of the worker's sleep in `epoll_wait` and its wake-up (a sequential client leaves
//! the server idle between requests), plus hyper's parsing and encoding. No server on this
//! stack answers below it.
//!
//! ```sh
//! cargo build --release -p vr-benches --example http_floor
//! target/release/examples/http_floor hyper 16421 &
//! python3 benches/server_cpu.py --pid $! --url http://127.0.0.1:16421 --requests 5000
//! ```
//!
//! (`server_cpu.py` goes on to a query, which the floor answers too, with the same body:
//! read only its `GET /` line.)

use std::convert::Infallible;

const BODY: &str = r#"{"title":"http-floor","ok":true}"#;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "hyper".into());
    let port: u16 = match args.next().map(|p| p.parse()) {
        None => 16421,
        Some(Ok(p)) => p,
        Some(Err(e)) => exit(&format!("the port: {e}")),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| exit(&format!("tokio runtime: {e}")));
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| exit(&format!("bind 127.0.0.1:{port}: {e}")));
        eprintln!("http_floor: {mode} on 127.0.0.1:{port}");
        match mode.as_str() {
            "axum" => {
                let app = axum::Router::new().route("/", axum::routing::any(|| async { BODY }));
                let app = app.fallback(|| async { BODY });
                if let Err(e) = axum::serve(listener, app).await {
                    exit(&format!("axum: {e}"));
                }
            }
            "hyper" => loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let answer = hyper::service::service_fn(|_request| async {
                        Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                            hyper::body::Bytes::from_static(BODY.as_bytes()),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), answer)
                        .await;
                });
            },
            other => exit(&format!("unknown server {other:?}: hyper or axum")),
        }
    });
}

fn exit(message: &str) -> ! {
    eprintln!("http_floor: {message}");
    std::process::exit(2)
}
