//! Getting bytes from a repository: the [`Transport`] trait, its HTTPS and `file://`
//! implementations, and bounded reads of metadata.
//!
//! A transport only moves bytes. It never decides whether they are trustworthy: length caps,
//! hashes and signatures are checked by the callers ([`fetch_bounded`], [`crate::download`],
//! the TUF workflow).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use url::Url;

/// Why a fetch failed. Distinguishes what callers handle differently: a missing file or an
/// unreachable server (try another mirror, retry later) from a server that sends too much or
/// too slowly (an attack or a broken mirror).
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum FetchError {
    /// No mirror is configured.
    #[error("no mirror configured")]
    NoMirror,
    /// The URL names a scheme this transport does not serve.
    #[error("{url}: unsupported URL scheme (expected https, http or file)")]
    UnsupportedScheme { url: Url },
    /// The server could not be reached or the connection broke.
    #[error("{url}: cannot reach server: {source}")]
    Unreachable {
        url: Url,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server has no such file.
    #[error("{url}: not found")]
    NotFound { url: Url },
    /// The server answered with an unexpected HTTP status.
    #[error("{url}: server answered HTTP {status}")]
    Status { url: Url, status: u16 },
    /// The server sent more bytes than allowed (endless-data attack or wrong file).
    #[error("{url}: more than {limit} bytes sent; refusing the rest")]
    TooLarge { url: Url, limit: u64 },
    /// No byte arrived within the read timeout.
    #[error("{url}: no data for {timeout:?}")]
    ReadTimeout { url: Url, timeout: Duration },
    /// Data arrived, but too slowly (slow-retrieval attack or a failing link).
    #[error("{url}: {bytes_per_second} bytes/s is below the minimum of {minimum} bytes/s")]
    TooSlow {
        url: Url,
        bytes_per_second: u64,
        minimum: u64,
    },
    /// A local file could not be read (`file://` transport).
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FetchError {
    /// True when the file is absent at this location (as opposed to a failure to get it).
    pub fn is_not_found(&self) -> bool {
        matches!(self, FetchError::NotFound { .. })
    }
}

/// An open response body, positioned at `offset`.
pub struct Body {
    /// Where in the file the stream starts: the requested offset if the server honoured the
    /// range, 0 if it sends the whole file.
    pub offset: u64,
    /// The bytes, in chunks.
    pub stream: BoxStream<'static, Result<Bytes, FetchError>>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("offset", &self.offset)
            .finish()
    }
}

/// Something that can open a URL, optionally from a byte offset (for resumed downloads).
pub trait Transport: Send + Sync {
    /// Opens `url`, asking for the bytes from `offset` on. The returned body says where it
    /// really starts.
    fn open<'a>(&'a self, url: &'a Url, offset: u64) -> BoxFuture<'a, Result<Body, FetchError>>;
}

/// Time limits against slow retrieval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Limit for establishing a connection. Default 10 s.
    pub connect: Duration,
    /// Limit for the wait between two chunks of data. Default 30 s.
    pub read: Duration,
    /// Minimum average speed once `grace` has passed; 0 disables the check. Default 1 KiB/s.
    pub min_bytes_per_second: u64,
    /// Time before the average speed is checked. Default 10 s.
    pub grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(30),
            min_bytes_per_second: 1024,
            grace: Duration::from_secs(10),
        }
    }
}

/// Wraps a body stream so that it fails when no chunk arrives within `timeouts.read` or the
/// average speed falls below `timeouts.min_bytes_per_second` after `timeouts.grace`.
pub fn guard_speed(url: &Url, body: Body, timeouts: Timeouts) -> Body {
    struct State {
        inner: BoxStream<'static, Result<Bytes, FetchError>>,
        url: Url,
        started: tokio::time::Instant,
        received: u64,
        timeouts: Timeouts,
        done: bool,
    }
    let state = State {
        inner: body.stream,
        url: url.clone(),
        started: tokio::time::Instant::now(),
        received: 0,
        timeouts,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let next = tokio::time::timeout(st.timeouts.read, st.inner.next()).await;
        let item = match next {
            Err(_) => Err(FetchError::ReadTimeout {
                url: st.url.clone(),
                timeout: st.timeouts.read,
            }),
            Ok(None) => return None,
            Ok(Some(Err(err))) => Err(err),
            Ok(Some(Ok(chunk))) => {
                st.received += chunk.len() as u64;
                let elapsed = st.started.elapsed();
                let minimum = st.timeouts.min_bytes_per_second;
                if minimum > 0 && elapsed > st.timeouts.grace {
                    let speed = (st.received as f64 / elapsed.as_secs_f64()) as u64;
                    if speed < minimum {
                        st.done = true;
                        return Some((
                            Err(FetchError::TooSlow {
                                url: st.url.clone(),
                                bytes_per_second: speed,
                                minimum,
                            }),
                            st,
                        ));
                    }
                }
                Ok(chunk)
            }
        };
        st.done = item.is_err();
        Some((item, st))
    });
    Body {
        offset: body.offset,
        stream: stream.boxed(),
    }
}

/// Reads a whole file of at most `max_len` bytes; a longer one fails with
/// [`FetchError::TooLarge`] as soon as the limit is passed, without reading the rest.
pub async fn fetch_bounded(
    transport: &dyn Transport,
    url: &Url,
    max_len: u64,
) -> Result<Vec<u8>, FetchError> {
    let body = transport.open(url, 0).await?;
    let mut out = Vec::new();
    let mut stream = body.stream;
    while let Some(chunk) = stream.try_next().await? {
        if out.len() as u64 + chunk.len() as u64 > max_len {
            return Err(FetchError::TooLarge {
                url: url.clone(),
                limit: max_len,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Trust and identity settings of the HTTPS transport.
#[derive(Debug, Clone, Default)]
pub struct HttpsConfig {
    /// PEM certificates trusted as roots (the Herald root, or a configured CA bundle);
    /// `None` trusts the operating system's roots instead.
    pub trust_anchors_pem: Option<Vec<u8>>,
    /// PEM private key followed by the certificate chain, for mutual TLS.
    pub client_identity_pem: Option<Vec<u8>>,
    /// A proxy for every request (`http://host:port`); `None` uses `HTTPS_PROXY`/`NO_PROXY`.
    pub proxy: Option<String>,
    /// Hosts that bypass the configured proxy, in `NO_PROXY` syntax.
    pub no_proxy: Option<String>,
    /// Time limits.
    pub timeouts: Timeouts,
    /// Allow `http://` URLs (the configuration's `allow_plain_http`). Without it the client
    /// refuses any plain-HTTP request, a redirected one included.
    pub allow_plain_http: bool,
}

/// Why the HTTPS transport could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum TransportConfigError {
    /// The trust anchors are not PEM certificates.
    #[error("trust anchors: {0}")]
    TrustAnchors(#[source] reqwest::Error),
    /// No certificate was found in the trust anchors.
    #[error("trust anchors: no certificate found")]
    NoTrustAnchor,
    /// The client identity is not a PEM key plus certificates.
    #[error("client identity: {0}")]
    Identity(#[source] reqwest::Error),
    /// The proxy URL is invalid.
    #[error("proxy {url}: {source}")]
    Proxy {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// HTTPS (and plain HTTP, where a caller allows it) over rustls, with keep-alive connection
/// reuse, HTTP/2 when the server offers it, proxies, and mutual TLS.
///
/// Redirects are followed only within the origin (scheme, host, port) of the request, at most
/// [`herald_token_client::MAX_REDIRECTS`] of them: a mirror cannot send the client
/// certificate or a status report to another host, nor downgrade to plain HTTP.
#[derive(Debug, Clone)]
pub struct HttpsTransport {
    client: reqwest::Client,
    timeouts: Timeouts,
}

impl HttpsTransport {
    /// Builds the transport. When trust anchors are configured, only they are trusted.
    pub fn new(config: &HttpsConfig) -> Result<Self, TransportConfigError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(config.trust_anchors_pem.is_none())
            .https_only(!config.allow_plain_http)
            .redirect(herald_token_client::same_origin_redirects())
            .connect_timeout(config.timeouts.connect)
            .read_timeout(config.timeouts.read)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("herald-update/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &config.trust_anchors_pem {
            let anchors = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(TransportConfigError::TrustAnchors)?;
            if anchors.is_empty() {
                return Err(TransportConfigError::NoTrustAnchor);
            }
            for anchor in anchors {
                builder = builder.add_root_certificate(anchor);
            }
        }
        if let Some(identity) = &config.client_identity_pem {
            let identity =
                reqwest::Identity::from_pem(identity).map_err(TransportConfigError::Identity)?;
            builder = builder.identity(identity);
        }
        if let Some(proxy_url) = &config.proxy {
            let proxy =
                reqwest::Proxy::all(proxy_url).map_err(|source| TransportConfigError::Proxy {
                    url: proxy_url.clone(),
                    source,
                })?;
            let no_proxy = config
                .no_proxy
                .as_deref()
                .and_then(reqwest::NoProxy::from_string);
            builder = builder.proxy(proxy.no_proxy(no_proxy));
        }
        let client = builder.build().map_err(TransportConfigError::Client)?;
        Ok(HttpsTransport {
            client,
            timeouts: config.timeouts,
        })
    }

    /// Posts a JSON body with the extra `headers` and succeeds only on an HTTP 2xx answer (an
    /// acknowledgement).
    pub async fn post_json(
        &self,
        url: &Url,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Result<(), FetchError> {
        let mut request = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.body(body).send().await.map_err(unreachable(url))?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.clone(),
                status: status.as_u16(),
            });
        }
        Ok(())
    }

    /// Sends a HEAD request and returns the HTTP status, whatever it is: the server was
    /// reached and answered (for `doctor`'s reachability checks).
    pub async fn probe(&self, url: &Url) -> Result<u16, FetchError> {
        let response = self
            .client
            .head(url.clone())
            .send()
            .await
            .map_err(unreachable(url))?;
        Ok(response.status().as_u16())
    }

    /// The server's clock, from the `Date` header of a HEAD request (for clock sanity
    /// checks); `None` when the server sends no usable date.
    pub async fn server_date(&self, url: &Url) -> Result<Option<time::OffsetDateTime>, FetchError> {
        if !matches!(url.scheme(), "https" | "http") {
            return Ok(None);
        }
        let response = self
            .client
            .head(url.clone())
            .send()
            .await
            .map_err(unreachable(url))?;
        let date = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()
            });
        Ok(date)
    }

    async fn open_http(&self, url: &Url, offset: u64) -> Result<Body, FetchError> {
        let mut request = self.client.get(url.clone());
        if offset > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let response = request.send().await.map_err(unreachable(url))?;
        let status = response.status();
        let start = match status.as_u16() {
            200 => 0,
            206 => content_range_start(response.headers()).unwrap_or(u64::MAX),
            404 | 410 => return Err(FetchError::NotFound { url: url.clone() }),
            code => {
                return Err(FetchError::Status {
                    url: url.clone(),
                    status: code,
                })
            }
        };
        if start != 0 && start != offset {
            // A range we did not ask for: treat as a broken server.
            return Err(FetchError::Status {
                url: url.clone(),
                status: status.as_u16(),
            });
        }
        let err_url = url.clone();
        let stream = response
            .bytes_stream()
            .map_err(move |err| FetchError::Unreachable {
                url: err_url.clone(),
                source: Box::new(err),
            })
            .boxed();
        Ok(guard_speed(
            url,
            Body {
                offset: start,
                stream,
            },
            self.timeouts,
        ))
    }
}

/// Maps a client error for `url` to [`FetchError::Unreachable`]. The message carries the
/// whole chain of causes (reqwest's own message omits them), so that a refusal in the TLS
/// handshake, such as a revoked client certificate, is named in the status report.
fn unreachable(url: &Url) -> impl Fn(reqwest::Error) -> FetchError + '_ {
    move |err| FetchError::Unreachable {
        url: url.clone(),
        source: herald_token_client::error_chain(&err).into(),
    }
}

/// The first byte position of a `Content-Range: bytes START-END/LEN` header.
fn content_range_start(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let value = headers.get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    let range = value.strip_prefix("bytes ")?;
    let (start, _) = range.split_once('-')?;
    start.trim().parse().ok()
}

impl Transport for HttpsTransport {
    fn open<'a>(&'a self, url: &'a Url, offset: u64) -> BoxFuture<'a, Result<Body, FetchError>> {
        Box::pin(async move {
            match url.scheme() {
                "https" | "http" => self.open_http(url, offset).await,
                "file" => FileTransport.open(url, offset).await,
                _ => Err(FetchError::UnsupportedScheme { url: url.clone() }),
            }
        })
    }
}

/// `file://` URLs: repositories on a local disk, a mounted share or an unpacked bundle.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileTransport;

impl Transport for FileTransport {
    fn open<'a>(&'a self, url: &'a Url, offset: u64) -> BoxFuture<'a, Result<Body, FetchError>> {
        Box::pin(async move {
            if url.scheme() != "file" {
                return Err(FetchError::UnsupportedScheme { url: url.clone() });
            }
            let path = url
                .to_file_path()
                .map_err(|()| FetchError::UnsupportedScheme { url: url.clone() })?;
            let file_err = |source: std::io::Error| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    FetchError::NotFound { url: url.clone() }
                } else {
                    FetchError::File {
                        path: path.clone(),
                        source,
                    }
                }
            };
            let mut file = tokio::fs::File::open(&path).await.map_err(file_err)?;
            use tokio::io::AsyncSeekExt;
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(file_err)?;
            let read_path = path.clone();
            let stream = futures_util::stream::try_unfold(file, move |mut file| {
                let read_path = read_path.clone();
                async move {
                    use tokio::io::AsyncReadExt;
                    let mut buf = vec![0u8; 64 * 1024];
                    let n = file
                        .read(&mut buf)
                        .await
                        .map_err(|source| FetchError::File {
                            path: read_path,
                            source,
                        })?;
                    if n == 0 {
                        return Ok(None);
                    }
                    buf.truncate(n);
                    Ok(Some((Bytes::from(buf), file)))
                }
            })
            .boxed();
            Ok(Body { offset, stream })
        })
    }
}
