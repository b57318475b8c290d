//! A minimal HTTP/1.1 keep-alive client: one TCP connection per worker, reopened after a failure.
//!
//! Each worker owns its connection, so a closed loop with `N` clients holds exactly `N`
//! connections and an open loop exactly `--connections` of them; a pooled client would hide
//! how many sockets are really in use. Requests go out with `TCP_NODELAY` so that small JSON
//! bodies are not held back by Nagle's algorithm (that alone adds tens of milliseconds).
//!
//! Only plain `http://` is spoken: a load generator measuring TLS would measure its own TLS
//! stack. Put a TLS-terminating proxy in front of a server that only speaks HTTPS.

use std::fmt;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// Where the server is: `http://host[:port][/prefix]`, plus an optional `api-key` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
    port: u16,
    base_path: String,
    api_key: Option<String>,
}

impl Endpoint {
    /// Parses an `http://` URL. The port defaults to 80 as in any URL (Qdrant listens on
    /// 6333, so it is normally given); a path becomes a prefix of every request path.
    pub fn parse(url: &str) -> Result<Endpoint> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if url.starts_with("https://") {
            return Err(invalid(
                "https is not supported (measure the server, not TLS; use a TLS-terminating proxy)",
            ));
        } else {
            return Err(invalid("must start with http://"));
        };
        if rest.contains(['?', '#']) {
            return Err(invalid("query strings and fragments are not allowed"));
        }
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(invalid(
                "credentials in the URL are not supported (use --api-key)",
            ));
        }
        let (host, port) = split_host_port(authority).map_err(invalid)?;
        Ok(Endpoint {
            host,
            port,
            base_path: path.trim_end_matches('/').to_string(),
            api_key: None,
        })
    }

    /// The same endpoint sending `api-key: key` with every request (Qdrant's header).
    pub fn with_api_key(mut self, key: Option<String>) -> Endpoint {
        self.api_key = key;
        self
    }

    /// The host (without brackets for IPv6).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port` as it goes in the `Host` header (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The request target for an API path such as `/collections/c`.
    pub fn target(&self, path: &str) -> String {
        format!("{}{}", self.base_path, path)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.base_path)
    }
}

fn split_host_port(authority: &str) -> std::result::Result<(String, u16), &'static str> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let close = rest.find(']').ok_or("unclosed `[` in an IPv6 address")?;
        let host = &rest[..close];
        match &rest[close + 1..] {
            "" => (host, None),
            tail => (
                host,
                Some(tail.strip_prefix(':').ok_or("junk after an IPv6 address")?),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("no host");
    }
    let port = match port {
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| "the port is not a number from 1 to 65535")?,
    };
    if port == 0 {
        return Err("port 0 cannot be connected to");
    }
    Ok((host.to_string(), port))
}

/// Why one request failed, as the measured runs classify it.
#[derive(Debug)]
pub enum RequestFailure {
    /// The TCP connection (or the HTTP handshake on it) could not be opened.
    Connect(std::io::Error),
    /// No complete answer within the timeout.
    Timeout,
    /// The connection broke or the answer was not valid HTTP.
    Transport(String),
}

impl fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestFailure::Connect(e) => write!(f, "connect: {e}"),
            RequestFailure::Timeout => f.write_str("timed out"),
            RequestFailure::Transport(reason) => f.write_str(reason),
        }
    }
}

/// An answer: status and whole body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The body, read to the end.
    pub body: Bytes,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One keep-alive connection, opened on first use and after any failure.
pub struct Connection {
    endpoint: Endpoint,
    host_header: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    /// A connection to `endpoint`; nothing is opened until the first request.
    pub fn new(endpoint: &Endpoint) -> Connection {
        let host_header = HeaderValue::from_str(&endpoint.authority())
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        Connection {
            endpoint: endpoint.clone(),
            host_header,
            sender: None,
        }
    }

    /// Opens the TCP connection now if it is not open (so a run can start with warm sockets).
    pub async fn connect(&mut self) -> std::result::Result<(), RequestFailure> {
        if self.sender.as_ref().is_some_and(|s| !s.is_closed()) {
            return Ok(());
        }
        let stream = TcpStream::connect((self.endpoint.host(), self.endpoint.port()))
            .await
            .map_err(RequestFailure::Connect)?;
        stream.set_nodelay(true).map_err(RequestFailure::Connect)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| RequestFailure::Connect(std::io::Error::other(e)))?;
        // The connection future drives the socket; it ends when the sender is dropped or the
        // peer closes, and its error (if any) surfaces on the next send.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    /// Sends one request and reads the whole answer, all within `timeout`.
    ///
    /// `path` is the API path (the endpoint's prefix is added). After any failure the
    /// connection is dropped, and the next request opens a fresh one.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> std::result::Result<Response, RequestFailure> {
        let outcome = tokio::time::timeout(timeout, self.send_inner(method, path, body)).await;
        let result = outcome.unwrap_or(Err(RequestFailure::Timeout));
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn send_inner(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> std::result::Result<Response, RequestFailure> {
        self.connect().await?;
        let Some(sender) = self.sender.as_mut() else {
            return Err(RequestFailure::Transport("connection not open".into()));
        };
        sender
            .ready()
            .await
            .map_err(|e| RequestFailure::Transport(format!("connection closed: {e}")))?;
        let mut builder = Request::builder()
            .method(method)
            .uri(self.endpoint.target(path))
            .header(HOST, self.host_header.clone())
            .header(USER_AGENT, concat!("loadtest/", env!("CARGO_PKG_VERSION")));
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        if let Some(key) = &self.endpoint.api_key {
            builder = builder.header("api-key", key.as_str());
        }
        let request = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| RequestFailure::Transport(format!("cannot build request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| RequestFailure::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| RequestFailure::Transport(format!("reading the body: {e}")))?
            .to_bytes();
        Ok(Response { status, body })
    }

    /// A setup call: sends JSON (or nothing), requires a 2xx and returns the body parsed.
    pub async fn call_json(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        let method_name = method_name(&method);
        let response =
            self.send(method, path, body, timeout)
                .await
                .map_err(|failure| match failure {
                    RequestFailure::Connect(source) => Error::Connect {
                        address: self.endpoint.authority(),
                        source,
                    },
                    other => Error::Transport {
                        method: method_name,
                        path: path.to_string(),
                        reason: other.to_string(),
                    },
                })?;
        if !response.is_success() {
            return Err(Error::Status {
                method: method_name,
                path: path.to_string(),
                status: response.status,
                body: body_excerpt(&response.body),
            });
        }
        serde_json::from_slice(&response.body).map_err(|e| Error::BadResponse {
            path: path.to_string(),
            reason: format!("not JSON: {e}"),
        })
    }
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        _ => "request",
    }
}

/// The first 300 characters of a body, for error messages.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut excerpt: String = text.chars().take(300).collect();
    if text.chars().count() > 300 {
        excerpt.push('…');
    }
    excerpt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        let e = Endpoint::parse("http://localhost:6333").unwrap();
        assert_eq!(
            (e.host(), e.port(), e.target("/x")),
            ("localhost", 6333, "/x".into())
        );
        let e = Endpoint::parse("http://10.0.0.1/qdrant/").unwrap();
        assert_eq!((e.port(), e.target("/x")), (80, "/qdrant/x".into()));
        let e = Endpoint::parse("http://[::1]:7000").unwrap();
        assert_eq!((e.host(), e.authority()), ("::1", "[::1]:7000".into()));
        assert_eq!(e.to_string(), "http://[::1]:7000");
    }

    #[test]
    fn rejects_what_it_cannot_reach() {
        for bad in [
            "https://h:1",
            "h:1",
            "http://:1",
            "http://h:0",
            "http://h:99999",
            "http://h:1?x=1",
            "http://u:p@h:1",
            "http://[::1",
        ] {
            assert!(
                matches!(Endpoint::parse(bad), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }
}
