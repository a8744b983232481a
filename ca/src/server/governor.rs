//! The connection governor shared by every listener (the HTTPS and plain-HTTP listeners of
//! `herald-ca serve` and the relay's listener): who gets a connection, and how long a
//! connection may hold on to it.
//!
//! - A global cap per listener ([`Limits::max_connections`]): beyond it new clients wait in
//!   the kernel's backlog.
//! - A cap per client address ([`Limits::max_connections_per_client`], below the global cap):
//!   a connection beyond it is accepted and closed at once, so one greedy address can never
//!   fill the listener and the other clients keep being served. IPv6 clients are counted per
//!   /64, the block one subscriber usually holds.
//! - Deadlines: the TLS handshake ([`Limits::handshake_timeout`]); request headers and the
//!   idle keep-alive time between requests ([`Limits::header_timeout`]); and each of the two
//!   parts of a request that wait on the client ([`Limits::request_timeout`]): receiving its
//!   body, and sending its response until it is handed to the kernel, the latter extended by
//!   one second for every [`Limits::min_response_rate`] bytes sent, so large downloads over
//!   slow links still finish while a client that stops sending its body or stops reading the
//!   answer is disconnected. The handler's own time (waiting for the store under load) is the
//!   server's, not the client's, and is not cut short.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::Either;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::core::limits::Limits;
use crate::http::OcspFront;

/// The address a client is counted under: IPv4 as is, IPv6 by its /64 (IPv4-mapped IPv6 as
/// IPv4).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Admits connections to one listener.
#[derive(Debug)]
pub(crate) struct Governor {
    limits: Limits,
    permits: Arc<Semaphore>,
    per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// A connection's place in its listener: released when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    client: IpAddr,
    per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// An admitted connection.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// The socket, counting what goes through it.
    pub(crate) stream: GovernedStream<TcpStream>,
    /// The client.
    pub(crate) peer: SocketAddr,
    /// Holds the connection's place until the connection ends.
    pub(crate) slot: Slot,
}

impl Governor {
    /// A governor enforcing `limits` (made [`Limits::sane`]).
    pub(crate) fn new(limits: Limits) -> Self {
        let limits = limits.sane();
        Self {
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            per_client: Arc::default(),
            limits,
        }
    }

    /// The limits enforced.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Waits for a free place, then accepts connections until one comes from a client under
    /// its cap; connections from clients at their cap are closed at once. `None` when the
    /// listener can no longer admit anything.
    pub(crate) async fn accept(&self, listener: &TcpListener) -> Option<Admitted> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and similar: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let client = client_key(peer.ip());
            let admitted = {
                let mut counts = self
                    .per_client
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let held = counts.entry(client).or_insert(0);
                if *held < self.limits.max_connections_per_client {
                    *held += 1;
                    true
                } else {
                    false
                }
            };
            if !admitted {
                tracing::debug!(%peer, "client at its connection cap; closing the new connection");
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            return Some(Admitted {
                stream: GovernedStream::new(stream),
                peer,
                slot: Slot {
                    _permit: permit,
                    client,
                    per_client: self.per_client.clone(),
                },
            });
        }
    }
}

/// What a connection is doing, shared by its socket, its requests and its watchdog.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// Bytes written to the socket.
    written: AtomicU64,
    /// The last write could not proceed (the client is not reading).
    write_blocked: AtomicBool,
    /// Requests whose response has not been handed over completely.
    in_flight: AtomicUsize,
    /// Since when the connection waits on the client (receiving a request's body, or sending
    /// its response), with the bytes written before; `None` while nothing is in flight or the
    /// server is handling a request (its own time, not the client's).
    waiting: Mutex<Waiting>,
    /// Wakes the watchdog when the connection starts waiting on the client.
    wake: Notify,
}

/// The client-bound phases of a request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// Nothing waits on the client.
    #[default]
    No,
    /// Receiving the request's body since then.
    Receiving(Instant),
    /// Sending the response since then, with the bytes written before it.
    Sending(Instant, u64),
}

impl Activity {
    fn set_waiting(&self, waiting: Waiting) {
        *self.waiting.lock().unwrap_or_else(PoisonError::into_inner) = waiting;
        self.wake.notify_one();
    }

    fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.set_waiting(Waiting::Receiving(Instant::now()));
        RequestGuard(self.clone())
    }

    /// The request's body was read to its end or dropped: the handler's time starts.
    fn body_done(&self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*waiting, Waiting::Receiving(_)) {
            *waiting = Waiting::No;
        }
    }

    /// The response head is ready: sending starts.
    fn response_ready(&self) {
        let written = self.written.load(Ordering::SeqCst);
        self.set_waiting(Waiting::Sending(Instant::now(), written));
    }

    /// Since when the connection waits on the client, with the bytes written before then.
    fn current_wait(&self) -> Option<(Instant, u64)> {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if self.in_flight.load(Ordering::SeqCst) == 0 && !self.write_blocked.load(Ordering::SeqCst)
        {
            *waiting = Waiting::No;
        }
        match *waiting {
            Waiting::No => None,
            Waiting::Receiving(since) => Some((since, self.written.load(Ordering::SeqCst))),
            Waiting::Sending(since, written) => Some((since, written)),
        }
    }

    /// Returns when the client overran a request's deadline.
    async fn overrun(&self, limits: &Limits) {
        loop {
            let Some((since, written_before)) = self.current_wait() else {
                self.wake.notified().await;
                continue;
            };
            let sent = self
                .written
                .load(Ordering::SeqCst)
                .saturating_sub(written_before);
            let deadline = since
                + limits.request_timeout
                + Duration::from_secs(sent / limits.min_response_rate.max(1));
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = self.wake.notified() => {}
            }
        }
    }
}

/// Marks a request as served when its response body is dropped (sent or abandoned).
#[derive(Debug)]
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A socket that records the connection's [`Activity`].
#[derive(Debug)]
pub(crate) struct GovernedStream<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I> GovernedStream<I> {
    fn new(inner: I) -> Self {
        Self {
            inner,
            activity: Arc::default(),
        }
    }

    /// The connection's activity, for [`serve_http`].
    pub(crate) fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    fn note_write<T>(&self, poll: &Poll<std::io::Result<T>>) {
        self.activity
            .write_blocked
            .store(poll.is_pending(), Ordering::SeqCst);
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for GovernedStream<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for GovernedStream<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.note_write(&poll);
        if let Poll::Ready(Ok(n)) = poll {
            this.activity.written.fetch_add(n as u64, Ordering::SeqCst);
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.note_write(&poll);
        poll
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.note_write(&poll);
        poll
    }
}

/// A response body that marks its request served when dropped.
struct TrackedBody {
    inner: axum::body::Body,
    _guard: RequestGuard,
}

impl Body for TrackedBody {
    type Data = <axum::body::Body as Body>::Data;
    type Error = <axum::body::Body as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that marks the end of receiving when read to its end or dropped.
struct TrackedRequestBody {
    inner: hyper::body::Incoming,
    activity: Arc<Activity>,
}

impl Drop for TrackedRequestBody {
    fn drop(&mut self) {
        self.activity.body_done();
    }
}

impl Body for TrackedRequestBody {
    type Data = <hyper::body::Incoming as Body>::Data;
    type Error = <hyper::body::Incoming as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(poll, Poll::Ready(None | Some(Err(_)))) {
            this.activity.body_done();
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Longest a closing connection keeps reading what its client still sends.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Most bytes a closing connection reads and throws away.
const LINGER_BYTES: usize = 256 * 1024;

/// Closes a connection whose last exchange is over: shuts down the sending side (TLS
/// close_notify, then TCP FIN), then reads and throws away what the client still sends, for
/// at most [`LINGER_TIME`] and [`LINGER_BYTES`], before the socket is closed. A response
/// sent before the server read the whole request (`413` for a body over the limit) thus
/// reaches the client: closing a socket with unread data makes the kernel send a reset,
/// which can make the client's side discard the response before it is read (RFC 9112,
/// section 9.6).
async fn close_lingering<I: AsyncRead + AsyncWrite + Unpin>(mut io: I) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let drained = tokio::time::timeout(LINGER_TIME, async {
        io.shutdown().await?;
        let mut buf = [0u8; 8192];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match io.read(&mut buf).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if let Ok(Err(e)) = drained {
        tracing::debug!(error = %e, "closing the connection");
    }
}

/// Serves HTTP/1.1 on `io` with `router` (OCSP requests first through `ocsp`, if given)
/// until the client leaves or a deadline passes; `activity` is the one of the
/// [`GovernedStream`] under `io`.
pub(crate) async fn serve_http<I>(
    io: I,
    activity: Arc<Activity>,
    router: axum::Router,
    ocsp: Option<OcspFront>,
    limits: &Limits,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let inner = TowerToHyperService::new(router);
    let tracker = activity.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
        let guard = tracker.begin_request();
        let activity = tracker.clone();
        let request = request.map(|inner| TrackedRequestBody {
            inner,
            activity: activity.clone(),
        });
        let front = ocsp
            .as_ref()
            .and_then(|front| Some((front.clone(), OcspFront::route(&request)?)));
        let response = match front {
            Some((front, route)) => {
                Either::Left(async move { Ok::<_, Infallible>(front.answer(route, request).await) })
            }
            None => Either::Right(hyper::service::Service::call(&inner, request)),
        };
        async move {
            let response = response.await?;
            activity.response_ready();
            Ok::<_, Infallible>(response.map(|body| TrackedBody {
                inner: body,
                _guard: guard,
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .without_shutdown();
    tokio::select! {
        result = connection => match result {
            Ok(parts) => close_lingering(parts.io.into_inner()).await,
            Err(e) => tracing::debug!(error = %e, "connection ended with an error"),
        },
        () = activity.overrun(limits) => {
            // Dropping the connection closes the socket.
            tracing::debug!("request deadline passed; closing the connection");
        }
    }
}

/// Runs `future` (a TLS handshake) within the handshake deadline.
pub(crate) async fn within_handshake_deadline<F: Future>(
    limits: &Limits,
    future: F,
) -> Option<F::Output> {
    tokio::time::timeout(limits.handshake_timeout, future)
        .await
        .ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ipv6_clients_are_counted_per_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::7".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(client_key(mapped), IpAddr::from([192, 0, 2, 1]));
    }

    #[test]
    fn limits_are_made_sane() {
        let limits = Limits {
            max_connections: 4,
            max_connections_per_client: 256,
            request_timeout: Duration::ZERO,
            min_response_rate: 0,
            ..Limits::default()
        }
        .sane();
        assert_eq!(limits.max_connections_per_client, 4);
        assert_eq!(limits.request_timeout, Duration::from_secs(1));
        assert_eq!(limits.min_response_rate, 1);
        let zero = Limits {
            max_connections: 0,
            max_connections_per_client: 0,
            ..Limits::default()
        }
        .sane();
        assert_eq!(
            (zero.max_connections, zero.max_connections_per_client),
            (1, 1)
        );
    }
}
