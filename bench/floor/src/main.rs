//! `hyper-floor`: the least a proxy built on hyper and tokio can do per call, and so the floor
//! under meshgate's own cost in the benchmark. It forwards every request to one upstream over
//! pooled keep-alive connections, replacing the `Authorization` header as nginx's
//! `proxy_set_header` does in the benchmark, and streams the answer back as it arrives. No
//! auth, no metering, no ledger: whatever meshgate spends above it is meshgate's own work.
//! One thread, as the benchmark's nginx has one worker.

use clap::Parser;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderValue, Request, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;

#[derive(Parser)]
#[command(about = "A bare forwarder on hyper, the floor of a hyper-based proxy (benchmarks only)")]
struct Args {
    /// Where to listen; port 0 picks a free one (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The upstream's base URL, e.g. http://127.0.0.1:9000.
    #[arg(long)]
    upstream: String,
    /// The `Authorization` value sent upstream in place of the client's.
    #[arg(long)]
    authorization: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let authorization = HeaderValue::from_str(&args.authorization)?;
    let upstream = args.upstream.trim_end_matches('/').to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut connector = HttpConnector::new();
        // Small SSE writes must not wait for delayed ACKs (nginx sets TCP_NODELAY too).
        connector.set_nodelay(true);
        let client: Client<_, Incoming> = Client::builder(TokioExecutor::new()).build(connector);
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        println!("hyper-floor listening on http://{}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let (client, upstream, authorization) =
                (client.clone(), upstream.clone(), authorization.clone());
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let (mut parts, body) = request.into_parts();
                let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let uri = format!("{upstream}{path}")
                    .parse::<Uri>()
                    .map_err(|e| e.to_string());
                parts.headers.insert(AUTHORIZATION, authorization.clone());
                parts.headers.remove(HOST);
                let client = client.clone();
                async move {
                    parts.uri = uri?;
                    client
                        .request(Request::from_parts(parts, body))
                        .await
                        // A String error: hyper logs nothing and closes the connection.
                        .map_err(|e| e.to_string())
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
