//! A small client for Loom's REST API, used by the CLI commands.

use std::fmt;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Remote;
use super::session::Saved;

const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Where Loom is when nothing names it: the address `loom serve` binds (`LOOM_BIND`, so a
/// server and a CLI sharing one environment agree), else Loom's default. Returns the URL and
/// where it came from.
pub fn default_url() -> (String, &'static str) {
    match std::env::var("LOOM_BIND").ok().and_then(|bind| url_of_bind(&bind)) {
        Some(url) => (url, "from LOOM_BIND"),
        None => (DEFAULT_URL.to_owned(), "Loom's default"),
    }
}

/// `http://host:port` for a bind address; an unspecified host (`0.0.0.0`, `[::]`) is reached
/// on loopback.
fn url_of_bind(bind: &str) -> Option<String> {
    let addr: std::net::SocketAddr = match bind.trim().parse() {
        Ok(addr) => addr,
        Err(_) => {
            // `localhost:9000` and other names.
            let (host, port) = bind.trim().rsplit_once(':')?;
            let port: u16 = port.parse().ok()?;
            return (!host.is_empty()).then(|| format!("http://{host}:{port}"));
        }
    };
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    Some(format!("http://{}", std::net::SocketAddr::new(ip, addr.port())))
}

/// What went wrong talking to the server, worded for the terminal.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach Loom at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    /// The server's own error: its message and code.
    #[error("{message} ({code}, HTTP {status})")]
    Api { status: u16, code: String, message: String },
    #[error("unexpected answer from the server (HTTP {status}): {detail}")]
    Protocol { status: u16, detail: String },
    #[error("not logged in: run `loom login` or set LOOM_TOKEN")]
    NoToken,
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("loom-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(60))
            .build()?;
        Ok(Client { http, base: base.trim_end_matches('/').to_owned(), token })
    }

    /// A client from flags and environment, falling back to what `loom login` saved.
    pub fn from_remote(remote: &Remote) -> anyhow::Result<Client> {
        let saved = Saved::load().unwrap_or_default();
        let url = remote.url.clone().or(saved.url).unwrap_or_else(|| default_url().0);
        let token = remote.token.clone().or(saved.token);
        if token.is_none() {
            return Err(ClientError::NoToken.into());
        }
        Client::new(&url, token)
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn send<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).query(query);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let res = req
            .send()
            .await
            .map_err(|source| ClientError::Unreachable { url: self.base.clone(), source })?;
        let status = res.status();
        let bytes = res
            .bytes()
            .await
            .map_err(|source| ClientError::Unreachable { url: self.base.clone(), source })?;
        if status.is_success() {
            let text: &[u8] =
                if status == StatusCode::NO_CONTENT || bytes.is_empty() { b"null" } else { &bytes };
            return serde_json::from_slice(text).map_err(|e| ClientError::Protocol {
                status: status.as_u16(),
                detail: e.to_string(),
            });
        }
        Err(refusal(status, &bytes))
    }

    /// Opens a server-sent event stream, resuming after `last_event_id`. No overall time
    /// limit; a stream silent for longer than three keep-alives is given up as dead.
    pub async fn open_stream(
        &self,
        path: &str,
        query: &[(&str, String)],
        last_event_id: Option<&str>,
    ) -> Result<reqwest::Response, ClientError> {
        let unreachable = |source| ClientError::Unreachable { url: self.base.clone(), source };
        let http = reqwest::Client::builder()
            .user_agent(concat!("loom-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(std::time::Duration::from_secs(45))
            .build()
            .map_err(unreachable)?;
        let mut req = http
            .get(format!("{}{path}", self.base))
            .query(query)
            .header("Accept", "text/event-stream");
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = req.send().await.map_err(unreachable)?;
        if res.status().is_success() {
            return Ok(res);
        }
        let status = res.status();
        let bytes = res.bytes().await.map_err(unreachable)?;
        Err(refusal(status, &bytes))
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        self.send::<(), T>(Method::GET, path, query, None).await
    }

    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(Method::POST, path, &[], Some(body)).await
    }

    pub async fn patch<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(Method::PATCH, path, &[], Some(body)).await
    }

    pub async fn delete<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<(), ClientError> {
        self.send::<B, serde_json::Value>(Method::DELETE, path, &[], body).await.map(|_| ())
    }
}

/// The server's refusal as an error: its code and message when it sent them.
fn refusal(status: StatusCode, bytes: &[u8]) -> ClientError {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(bytes).ok();
    let field =
        |name: &str| parsed.as_ref().and_then(|v| v["error"][name].as_str()).map(str::to_owned);
    match (field("code"), field("message")) {
        (Some(code), Some(message)) => ClientError::Api { status: status.as_u16(), code, message },
        _ => ClientError::Protocol {
            status: status.as_u16(),
            detail: String::from_utf8_lossy(bytes).chars().take(200).collect(),
        },
    }
}

/// Percent-encodes one path segment, so a typed id or name cannot address another route.
/// "", "." and ".." are refused: URL parsing collapses them as dot segments however they are
/// encoded, and the server trims a trailing slash, so `beads/.` would reach the bead list.
pub fn segment(text: &str) -> anyhow::Result<String> {
    if matches!(text, "" | "." | "..") {
        anyhow::bail!("{text:?} is not an id or a name");
    }
    Ok(text
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::url_of_bind;

    #[test]
    fn a_bind_address_becomes_the_url_a_client_reaches_it_at() {
        let url = |bind: &str| url_of_bind(bind);
        assert_eq!(url("127.0.0.1:9000").as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(url("0.0.0.0:8081").as_deref(), Some("http://127.0.0.1:8081"));
        assert_eq!(url("[::]:8082").as_deref(), Some("http://[::1]:8082"));
        assert_eq!(url("localhost:9001").as_deref(), Some("http://localhost:9001"));
        assert_eq!(url("nonsense"), None);
        assert_eq!(url(":80"), None);
    }
}
