//! The HTTPS path to the provider, with a test CA that the gateway is told to trust.

use crate::harness::Harness;
use serde_json::json;

#[tokio::test]
async fn forwards_over_https_with_a_private_ca() {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "meshgate test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();

    let mock = meshgate_mock::MockServer::start_tls(
        leaf.pem().as_bytes(),
        leaf_key.serialize_pem().as_bytes(),
    )
    .await
    .unwrap();
    let url = mock.url();
    assert!(url.starts_with("https://localhost:"));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let h = Harness::start_on(mock, &url, |c| c.providers.ca_file = Some(ca_file)).await;
    let r = h
        .openai("/openai/v1/chat/completions")
        .header("x-mock-input-tokens", "10")
        .json(&json!({"model": "gpt-4o-mini", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("[DONE]"));
    let event = h.one_event().await;
    assert_eq!(event["outcome"], "ok");
    assert_eq!(event["usage"]["input_uncached"], 10);

    // Without the CA, the same provider is refused: the certificate is really checked.
    let mock = meshgate_mock::MockServer::start_tls(
        leaf.pem().as_bytes(),
        leaf_key.serialize_pem().as_bytes(),
    )
    .await
    .unwrap();
    let url = mock.url();
    let untrusted = Harness::start_on(mock, &url, |_| {}).await;
    let r = untrusted
        .openai("/openai/v1/chat/completions")
        .json(&json!({"model": "gpt-4o-mini", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
}
