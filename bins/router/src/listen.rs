//! The HTTP listener: connections up to a cap, each request's head read within a time limit,
//! TLS when configured, and a drain on shutdown.
//!
//! `axum::serve` accepts without limit and gives hyper no timer, so a client that opens
//! connections and sends its request line a byte at a time (a slowloris) kept each one open
//! for as long as it liked, until the process ran out of file descriptors and refused
//! everyone. Here:
//! - a connection takes a slot from a fixed number before it is accepted: past the cap new
//!   clients wait in the kernel's backlog instead of failing the accept (`EMFILE`), and the
//!   cap stays below the descriptor limit;
//! - a request's head (request line and headers) must arrive within `header_read_timeout`,
//!   from the first byte of the connection or the end of the previous response: hyper then
//!   closes the connection (an idle keep-alive connection is closed after the same time);
//! - a TLS handshake must finish within the same time;
//! - bodies are read by the handlers, inside the request timeout (`time_limit`): a body
//!   trickled in slower is cut off there with 408.

use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// What one listener allows.
#[derive(Debug, Clone, Copy)]
pub struct ListenLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time to receive a request's head (and to finish a TLS handshake).
    pub header_read_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets each
/// connection finish the request it is serving, and returns once every connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: ListenLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Per-connection failures (reset before accept) are the client's; others
                    // (out of descriptors) pass with time, so wait a little and go on.
                    if !is_connection_error(&e) {
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            connection(stream, app, limits, tls, &mut closing).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // Every slot back: every connection closed.
    let _ = slots.acquire_many(limits.max_connections as u32).await;
}

async fn connection(
    stream: TcpStream,
    app: axum::Router,
    limits: ListenLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    closing: &mut watch::Receiver<bool>,
) {
    match tls {
        None => http(stream, app, limits, closing).await,
        Some(acceptor) => {
            match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => http(stream, app, limits, closing).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}

async fn http<S>(
    stream: S,
    app: axum::Router,
    limits: ListenLimits,
    closing: &mut watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(
        app.map_request(|r: Request<Incoming>| r.map(axum::body::Body::new)),
    );
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let mut draining = *closing.borrow();
    if draining {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            changed = closing.changed(), if !draining => {
                // A closed channel means the server is gone: drain as well.
                let _ = changed;
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// The TLS settings from a PEM certificate chain and a PEM private key.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "TLS certificate {}: no certificate in the file",
            cert.display()
        ));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("TLS key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The most connections the process's descriptor limit allows, keeping `reserve` for files.
/// Linux's `/proc/self/limits`; `None` where it cannot be read.
pub fn descriptor_budget(reserve: usize) -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    match soft {
        "unlimited" => Some(usize::MAX),
        n => Some(n.parse::<usize>().ok()?.saturating_sub(reserve)),
    }
}
