//! Connections to providers that the gateway drives itself: HTTP/1.1 over TCP or rustls,
//! kept alive in a pool per origin. A response body polls its own connection inline, so
//! every chunk the connection has already read is handed over in the same poll and leaves
//! in one write. (hyper's pooled client decodes in a task of its own and hands over one
//! chunk per scheduler turn, which costs a write per SSE event.)

use crate::upstream::{error_chain, SendError};
use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Idle connections older than this are not reused (providers close them around a minute).
const IDLE_FOR_AT_MOST: Duration = Duration::from_secs(50);
const IDLE_PER_ORIGIN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    fn of(uri: &Uri) -> Result<Origin, SendError> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            other => return Err(SendError::Other(format!("unsupported scheme {other:?}"))),
        };
        let host = uri
            .host()
            .ok_or_else(|| SendError::Other(format!("no host in {uri}")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Origin { https, host, port })
    }
}

/// Where requests go: the origin (the pool's key) and the Host header, worked out once per
/// provider rather than per call.
#[derive(Debug, Clone)]
pub struct Target {
    origin: Arc<Origin>,
    host: HeaderValue,
}

impl Target {
    /// The target of an absolute URL.
    pub fn of(uri: &Uri) -> Result<Target, SendError> {
        let origin = Origin::of(uri)?;
        // The URL's authority is the Host header as written (port and IPv6 brackets kept).
        let host = uri
            .authority()
            .map(|a| HeaderValue::from_str(a.as_str()))
            .ok_or_else(|| SendError::Other(format!("no host in {uri}")))?
            .map_err(|e| SendError::Other(e.to_string()))?;
        Ok(Target {
            origin: Arc::new(origin),
            host,
        })
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: Connection<TokioIo<Stream>, Full<Bytes>>,
    idle_since: Instant,
}

impl Conn {
    /// Lets the connection read, decode and write what it can; `false` once it is closed.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        Pin::new(&mut self.driver)
            .poll_without_shutdown(cx)
            .is_pending()
    }

    /// Still usable after sitting idle: not closed by the provider, not too old.
    fn reusable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.idle_since.elapsed() < IDLE_FOR_AT_MOST
            && self.drive(&mut cx)
            && !self.sender.is_closed()
    }
}

/// The pool of provider connections, shared by every call.
pub struct Pool {
    idle: Mutex<HashMap<Arc<Origin>, Vec<Conn>>>,
    tls: TlsConnector,
    connect_timeout: Duration,
}

impl Pool {
    pub fn new(tls: Arc<rustls::ClientConfig>, connect_timeout: Duration) -> Arc<Pool> {
        let mut tls = (*tls).clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(Pool {
            idle: Mutex::new(HashMap::new()),
            tls: TlsConnector::from(Arc::new(tls)),
            connect_timeout,
        })
    }

    /// An empty pool with the same TLS settings, for a serving thread of its own: its
    /// connections are then read and written by that thread only.
    pub fn sibling(&self) -> Arc<Pool> {
        Arc::new(Pool {
            idle: Mutex::new(HashMap::new()),
            tls: self.tls.clone(),
            connect_timeout: self.connect_timeout,
        })
    }

    fn checkout(&self, origin: &Origin) -> Option<Conn> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(origin)?;
        while let Some(mut conn) = list.pop() {
            if conn.reusable() {
                return Some(conn);
            }
        }
        None
    }

    fn give_back(&self, origin: &Arc<Origin>, mut conn: Conn) {
        conn.idle_since = Instant::now();
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(origin.clone()).or_default();
            if list.len() < IDLE_PER_ORIGIN {
                list.push(conn);
            }
        }
    }

    async fn connect(&self, origin: &Origin) -> Result<Conn, SendError> {
        let connecting = async {
            let tcp = TcpStream::connect((origin.host.as_str(), origin.port))
                .await
                .map_err(|e| SendError::Connect(format!("tcp connect error: {e}")))?;
            let _ = tcp.set_nodelay(true);
            let stream = if origin.https {
                let name =
                    rustls::pki_types::ServerName::try_from(origin.host.clone()).map_err(|e| {
                        SendError::Connect(format!("invalid server name {}: {e}", origin.host))
                    })?;
                let tls = self.tls.connect(name, tcp).await.map_err(|e| {
                    SendError::Connect(format!("tls handshake failed: {}", error_chain(&e)))
                })?;
                Stream::Tls(Box::new(tls))
            } else {
                Stream::Plain(tcp)
            };
            let (sender, driver) = hyper::client::conn::http1::Builder::new()
                .handshake(TokioIo::new(stream))
                .await
                .map_err(|e| {
                    SendError::Connect(format!("http handshake failed: {}", error_chain(&e)))
                })?;
            Ok(Conn {
                sender,
                driver,
                idle_since: Instant::now(),
            })
        };
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(result) => result,
            Err(_) => Err(SendError::ConnectTimeout(format!(
                "no connection to {}:{} within {} ms",
                origin.host,
                origin.port,
                self.connect_timeout.as_millis()
            ))),
        }
    }

    /// Sends `request` (an absolute URL) as [`Pool::send_to`] does.
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<Full<Bytes>>,
        first_byte: Duration,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let target = Target::of(request.uri())?;
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse::<Uri>()
            .map_err(|e| SendError::Other(e.to_string()))?;
        *request.uri_mut() = path;
        self.send_to(&target, request, first_byte).await
    }

    /// Sends `request` (its URI a path and query) to `target` and waits for the response
    /// head within `first_byte`. A pooled connection that turns out closed before the
    /// request was written is replaced by a fresh one.
    pub async fn send_to(
        self: &Arc<Self>,
        target: &Target,
        mut request: Request<Full<Bytes>>,
        first_byte: Duration,
    ) -> Result<Response<UpstreamBody>, SendError> {
        request.headers_mut().insert(HOST, target.host.clone());
        let origin = &target.origin;

        let deadline = tokio::time::Instant::now() + first_byte;
        let mut request = Some(request);
        loop {
            let Some(next) = request.take() else {
                return Err(SendError::Other("the request could not be sent".into()));
            };
            let (mut conn, reused) = match self.checkout(origin) {
                Some(conn) => (conn, true),
                None => (self.connect(origin).await?, false),
            };
            let sent = tokio::time::timeout_at(deadline, exchange(&mut conn, next)).await;
            match sent {
                Err(_) => return Err(SendError::FirstByteTimeout(first_byte)),
                Ok(Ok(response)) => {
                    return Ok(response.map(|incoming| UpstreamBody {
                        incoming,
                        conn: Some(conn),
                        pool: self.clone(),
                        origin: origin.clone(),
                    }))
                }
                Ok(Err(mut e)) => match e.take_message() {
                    Some(unsent) if reused => request = Some(unsent),
                    _ => return Err(SendError::Other(error_chain(&e.into_error()))),
                },
            }
        }
    }
}

/// Sends one request on `conn`, driving the connection until the response head is in.
async fn exchange(
    conn: &mut Conn,
    request: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<Full<Bytes>>>> {
    let Conn { sender, driver, .. } = conn;
    let mut response = pin!(sender.try_send_request(request));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = response.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        let _ = Pin::new(&mut *driver).poll_without_shutdown(cx);
        response.as_mut().poll(cx)
    })
    .await
}

/// A provider's response body that drives its connection as it is read, and gives the
/// connection back to the pool once the body has been read to its end.
pub struct UpstreamBody {
    incoming: Incoming,
    conn: Option<Conn>,
    pool: Arc<Pool>,
    origin: Arc<Origin>,
}

impl UpstreamBody {
    fn release(&mut self, cx: &mut Context<'_>) {
        if let Some(mut conn) = self.conn.take() {
            if conn.drive(cx) && conn.sender.is_ready() {
                self.pool.give_back(&self.origin, conn);
            }
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        // Look at what is decoded; if nothing, let the connection decode what it has
        // read (or read more), then look once more.
        for _ in 0..2 {
            match Pin::new(&mut this.incoming).poll_frame(cx) {
                Poll::Ready(None) => {
                    this.release(cx);
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(frame)) => {
                    if frame.is_err() {
                        this.conn = None;
                    } else if this.incoming.is_end_stream() {
                        this.release(cx);
                    }
                    return Poll::Ready(Some(frame));
                }
                Poll::Pending => {
                    // A closed connection ends the body through `incoming`.
                    if this.conn.as_mut().is_some_and(|conn| !conn.drive(cx)) {
                        this.conn = None;
                    }
                }
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
