//! `meshgate token`: a project's participant-token signing keys (through the admin API)
//! and minting tokens from a spec file — locally with a signing key file, without the
//! gateway, or else by the gateway's mint endpoint.

use crate::admin_client::AdminClient;
use crate::commands::{cell, print_json};
use crate::AdminTarget;
use anyhow::{bail, Context};
use meshgate_tokens::{SigningSecret, TokenSpec};
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Manage a project's signing keys.
    Keys {
        #[command(subcommand)]
        command: SigningKeysCommand,
    },
    /// Mint a participant token from a spec file; prints the token.
    ///
    /// With --signing-key-file (the secret printed when the key was made) the token is
    /// minted here, without the gateway; the key id comes from --signing-key-id and the
    /// project from the spec or --project. Otherwise the gateway mints it with one of the
    /// project's HS256 keys.
    Mint {
        /// The token spec (YAML: version, kind, identity, room, api, expires_in, ...).
        #[arg(long)]
        spec: PathBuf,
        /// The project; required unless the spec names it.
        #[arg(long)]
        project: Option<String>,
        /// The signing key id (the token's `kid`); required with --signing-key-file.
        #[arg(long)]
        signing_key_id: Option<String>,
        /// A file holding the signing secret's text: mint locally.
        #[arg(long)]
        signing_key_file: Option<PathBuf>,
        /// The key file's algorithm: HS256 (a shared secret) or EdDSA (an Ed25519 private
        /// key). Both are 32 base64url bytes, so the text alone cannot tell.
        #[arg(long, default_value = "HS256")]
        algorithm: String,
        /// The audience, as the gateway is configured (`[auth] audience`).
        #[arg(long, default_value = meshgate_tokens::DEFAULT_AUDIENCE)]
        audience: String,
        /// Print the token with its expiry and jti as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum SigningKeysCommand {
    /// Make a signing key; its secret (HS256 secret or Ed25519 private key) is printed once.
    Create {
        #[arg(long)]
        project: String,
        /// HS256 or EdDSA.
        #[arg(long, default_value = "HS256")]
        algorithm: String,
        /// EdDSA: your own public key (base64url); meshgate then never sees the private key.
        #[arg(long)]
        public_key: Option<String>,
        /// Write the secret to this file (mode 0600) instead of printing it.
        #[arg(long)]
        secret_file: Option<PathBuf>,
    },
    /// List a project's signing keys (never their secrets).
    List {
        #[arg(long)]
        project: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a signing key: its tokens stop working at once.
    Revoke { kid: String },
    /// Replace a signing key by a new one of the same algorithm; the old one is revoked.
    Rotate {
        kid: String,
        /// EdDSA: the new public key, when you keep the private key yourself.
        #[arg(long)]
        public_key: Option<String>,
        /// Write the new secret to this file (mode 0600) instead of printing it.
        #[arg(long)]
        secret_file: Option<PathBuf>,
    },
}

pub async fn token(command: TokenCommand, target: &AdminTarget) -> anyhow::Result<()> {
    match command {
        TokenCommand::Keys { command } => signing_keys(command, target).await,
        TokenCommand::Mint {
            spec,
            project,
            signing_key_id,
            signing_key_file,
            algorithm,
            audience,
            json,
        } => {
            let text = std::fs::read_to_string(&spec)
                .with_context(|| format!("cannot read the spec {}", spec.display()))?;
            let minted = match signing_key_file {
                Some(file) => {
                    mint_locally(&text, project, signing_key_id, &file, &algorithm, &audience)?
                }
                None => mint_remotely(&text, project, signing_key_id, target).await?,
            };
            if json {
                print_json(&minted)
            } else {
                println!("{}", cell(&minted["token"]));
                Ok(())
            }
        }
    }
}

fn mint_locally(
    spec_text: &str,
    project: Option<String>,
    kid: Option<String>,
    key_file: &std::path::Path,
    algorithm: &str,
    audience: &str,
) -> anyhow::Result<Value> {
    let spec = TokenSpec::from_yaml(spec_text)?;
    let Some(kid) = kid else {
        bail!("minting locally needs --signing-key-id (the id printed with the key)");
    };
    let project = match (project, &spec.project) {
        (Some(p), _) => p,
        (None, Some(p)) => p.clone(),
        (None, None) => bail!("name the project: `project:` in the spec, or --project"),
    };
    let secret_text = std::fs::read_to_string(key_file)
        .with_context(|| format!("cannot read the signing key file {}", key_file.display()))?;
    let secret = match algorithm {
        "HS256" => SigningSecret::hs256_from_text(secret_text.trim())?,
        "EdDSA" => SigningSecret::ed25519_from_text(secret_text.trim())?,
        other => bail!("--algorithm must be HS256 or EdDSA, not {other:?}"),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let now = i64::try_from(now).context("the clock is too far ahead")?;
    let claims = spec.claims(&kid, &project, audience, now)?;
    let token = meshgate_tokens::mint_participant(&claims, &kid, &secret)?;
    Ok(json!({
        "token": token,
        "expires_at": claims.exp,
        "jti": claims.jti,
        "signing_key_id": kid,
    }))
}

async fn mint_remotely(
    spec_text: &str,
    project: Option<String>,
    kid: Option<String>,
    target: &AdminTarget,
) -> anyhow::Result<Value> {
    // Checked here too, so a bad spec fails before any network call.
    let spec = TokenSpec::from_yaml(spec_text)?;
    let project = match (project, spec.project) {
        (Some(p), _) => p,
        (None, Some(p)) => p,
        (None, None) => bail!("name the project: `project:` in the spec, or --project"),
    };
    let mut body = json!({ "spec": spec_text });
    if let Some(kid) = kid {
        body["signing_key_id"] = Value::String(kid);
    }
    AdminClient::new(target)?
        .post(&format!("/admin/v1/projects/{project}/tokens"), &body)
        .await
}

/// Shows a new key's secret once: printed, or written to a private file.
fn show_secret(key: &Value, secret_file: Option<PathBuf>) -> anyhow::Result<()> {
    println!(
        "signing key {} ({}) of project {}",
        cell(&key["id"]),
        cell(&key["algorithm"]),
        cell(&key["project_id"])
    );
    if let Some(public) = key["public_key"].as_str() {
        println!("public key: {public}");
    }
    let Some(secret) = key["secret"].as_str() else {
        return Ok(());
    };
    match secret_file {
        Some(path) => {
            meshgate_gateway::state::write_private(&path, secret)?;
            println!("secret written to {}", path.display());
        }
        None => println!("secret (shown once): {secret}"),
    }
    println!(
        "mint locally: meshgate token mint --spec SPEC.yaml --signing-key-id {} --signing-key-file FILE --algorithm {}",
        cell(&key["id"]),
        cell(&key["algorithm"])
    );
    Ok(())
}

async fn signing_keys(command: SigningKeysCommand, target: &AdminTarget) -> anyhow::Result<()> {
    let client = AdminClient::new(target)?;
    match command {
        SigningKeysCommand::Create {
            project,
            algorithm,
            public_key,
            secret_file,
        } => {
            let mut body = json!({ "algorithm": algorithm });
            if let Some(p) = public_key {
                body["public_key"] = Value::String(p);
            }
            let key = client
                .post(&format!("/admin/v1/projects/{project}/signing-keys"), &body)
                .await?;
            show_secret(&key, secret_file)?;
        }
        SigningKeysCommand::List { project, json } => {
            let list = client
                .get(&format!("/admin/v1/projects/{project}/signing-keys"), &[])
                .await?;
            if json {
                return print_json(&list);
            }
            println!("{:<22} {:<6} {:<8} public_key", "id", "alg", "status");
            for k in list["data"].as_array().into_iter().flatten() {
                let status = if k["revoked_ms"].is_null() {
                    "active"
                } else {
                    "revoked"
                };
                println!(
                    "{:<22} {:<6} {:<8} {}",
                    cell(&k["id"]),
                    cell(&k["algorithm"]),
                    status,
                    cell(&k["public_key"])
                );
            }
        }
        SigningKeysCommand::Revoke { kid } => {
            client
                .post(&format!("/admin/v1/signing-keys/{kid}/revoke"), &json!({}))
                .await?;
            println!("revoked signing key {kid}; its tokens no longer work");
        }
        SigningKeysCommand::Rotate {
            kid,
            public_key,
            secret_file,
        } => {
            let mut body = json!({});
            if let Some(p) = public_key {
                body["public_key"] = Value::String(p);
            }
            let key = client
                .post(&format!("/admin/v1/signing-keys/{kid}/rotate"), &body)
                .await?;
            println!("revoked {kid}");
            show_secret(&key, secret_file)?;
        }
    }
    Ok(())
}
