//! Accept loop and per-connection HTTP serving (HTTP/1.1 keep-alive; HTTP/2 when TLS ALPN picks it).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::router;
use crate::state::MockState;

/// Serves plain HTTP on `listener` until the future is dropped (or the listener fails for good).
pub async fn serve(listener: TcpListener, state: Arc<MockState>) -> io::Result<()> {
    accept_loop(listener, state, None).await
}

/// Serves HTTPS on `listener` with `config` (see [`crate::tls_config`]).
pub async fn serve_tls(
    listener: TcpListener,
    state: Arc<MockState>,
    config: Arc<rustls::ServerConfig>,
) -> io::Result<()> {
    accept_loop(listener, state, Some(TlsAcceptor::from(config))).await
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<MockState>,
    tls: Option<TlsAcceptor>,
) -> io::Result<()> {
    // Connections live in the set so that dropping this future (MockServer's drop) ends them too.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(connection(stream, Arc::clone(&state), tls.clone()));
                }
                // Out of descriptors or a connection reset while queued: back off briefly, keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn connection(stream: TcpStream, state: Arc<MockState>, tls: Option<TlsAcceptor>) {
    // Without this, small SSE frames wait on Nagle and the peer's delayed ACK.
    let _ = stream.set_nodelay(true);
    match tls {
        None => http1_conn(stream, state, "http").await,
        Some(acceptor) => {
            let Ok(tls_stream) = acceptor.accept(stream).await else {
                return;
            };
            let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
            if h2 {
                let svc = service_fn(move |req: Request<Incoming>| {
                    router::handle(Arc::clone(&state), req, "https")
                });
                let _ = http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls_stream), svc)
                    .await;
            } else {
                http1_conn(tls_stream, state, "https").await;
            }
        }
    }
}

async fn http1_conn<S>(io: S, state: Arc<MockState>, scheme: &'static str)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc =
        service_fn(move |req: Request<Incoming>| router::handle(Arc::clone(&state), req, scheme));
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc)
        .await;
}
