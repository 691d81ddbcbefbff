//! HTTPS with a certificate from a test CA made by rcgen.

use meshgate_mock::MockServer;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use serde_json::{json, Value};

#[tokio::test]
async fn tls_with_a_private_ca() {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();

    let m = MockServer::start_tls(leaf.pem().as_bytes(), leaf_key.serialize_pem().as_bytes())
        .await
        .unwrap();
    assert!(m.url().starts_with("https://localhost:"));

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .resolve("localhost", m.addr)
        .build()
        .unwrap();
    let v: Value = client
        .post(format!("{}/v1/chat/completions", m.url()))
        .bearer_auth(crate::common::OPENAI_KEY)
        .json(&json!({"model": "gpt-4o", "messages": []}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "chat.completion");

    // Batch results_url uses the scheme and Host the client used.
    let b: Value = client
        .post(format!("{}/v1/messages/batches", m.url()))
        .header("x-api-key", crate::common::ANTHROPIC_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"requests": [{"custom_id": "a", "params": {"model": "c", "max_tokens": 1, "messages": []}}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(b["results_url"]
        .as_str()
        .unwrap()
        .starts_with(&format!("https://localhost:{}/", m.addr.port())));

    // A client that does not trust the CA is refused.
    let untrusting = reqwest::Client::builder()
        .resolve("localhost", m.addr)
        .build()
        .unwrap();
    assert!(untrusting
        .get(format!("{}/v1/models", m.url()))
        .send()
        .await
        .is_err());
}
