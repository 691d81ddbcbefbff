//! Provider connections: kept alive and reused, and replaced when the provider closed them.

use crate::harness::Harness;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP relay in front of the mock that counts connections and can cut them all.
struct CountingRelay {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    task: JoinHandle<()>,
}

impl CountingRelay {
    async fn start(target: std::net::SocketAddr) -> CountingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let task = tokio::spawn({
            let accepted = accepted.clone();
            let links = links.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let link = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    links.lock().unwrap().push(link);
                }
            }
        });
        CountingRelay {
            addr,
            accepted,
            links,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes every connection, as a provider does with idle keep-alive connections.
    async fn cut_all(&self) {
        let links: Vec<_> = self.links.lock().unwrap().drain(..).collect();
        for link in links {
            link.abort();
            let _ = link.await;
        }
    }
}

impl Drop for CountingRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn call(h: &Harness, stream: bool) -> u16 {
    let r = h
        .openai("/openai/v1/chat/completions")
        .json(&json!({"model": "gpt-4o-mini", "stream": stream, "messages": []}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    r.bytes().await.unwrap();
    status
}

#[tokio::test]
async fn provider_connections_are_reused_and_replaced_when_closed() {
    let mock = meshgate_mock::MockServer::start().await.unwrap();
    let relay = CountingRelay::start(mock.addr).await;
    let h = Harness::start_on(mock, &format!("http://{}", relay.addr), |_| {}).await;
    for stream in [false, true, false, true, false] {
        assert_eq!(call(&h, stream).await, 200);
    }
    assert_eq!(
        relay.accepted(),
        1,
        "one keep-alive connection served every call"
    );

    relay.cut_all().await;
    for stream in [false, true] {
        assert_eq!(
            call(&h, stream).await,
            200,
            "a closed pooled connection is replaced"
        );
    }
    assert_eq!(relay.accepted(), 2);
    assert_eq!(h.wait_events(7).await.len(), 7);
}
