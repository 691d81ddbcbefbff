//! The developer's own files: the gateway login kept by `meshgate login`, the admin login
//! kept by `meshgate login --admin`, and the local bearer of `meshgate proxy`. They live in
//! one config directory, each file mode 0600.
//!
//! The directory is `MESHGATE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/meshgate`, else
//! `$HOME/.config/meshgate`.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The gateway a developer logged in to and the credential used there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    /// The gateway's base URL, e.g. `https://llm.example.com`.
    pub url: String,
    /// A meshgate credential: an API key, a participant token or an OAuth access token.
    pub token: String,
    /// Sent as `Meshgate-Project-Id` (needed with OAuth access tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
}

/// The gateway an administrator logged in to and its admin token, used by the admin
/// commands (`projects`, `keys`, `credits`, `token`, `providers`, `usage`, `audit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminLogin {
    /// The gateway's base URL.
    pub url: String,
    /// The gateway's admin token.
    pub admin_token: String,
}

/// The config directory (not created here).
pub fn config_dir() -> anyhow::Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("MESHGATE_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(dir).join("meshgate"));
    }
    let home = var("HOME").context("cannot find the config directory: HOME is not set")?;
    Ok(PathBuf::from(home).join(".config").join("meshgate"))
}

fn login_path() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("login.json"))
}

/// The stored login, if any.
pub fn load_login() -> anyhow::Result<Option<Login>> {
    let path = login_path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("{} is not a meshgate login", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Stores the login (mode 0600), replacing any earlier one; returns the file's path.
pub fn save_login(login: &Login) -> anyhow::Result<PathBuf> {
    let path = login_path()?;
    write_private(&path, &serde_json::to_string_pretty(login)?)?;
    Ok(path)
}

/// Removes the stored login; `false` when there was none.
pub fn remove_login() -> anyhow::Result<bool> {
    remove(&login_path()?)
}

fn admin_login_path() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("admin-login.json"))
}

/// The stored admin login, if any.
pub fn load_admin_login() -> anyhow::Result<Option<AdminLogin>> {
    let path = admin_login_path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("{} is not a meshgate admin login", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Stores the admin login (mode 0600), replacing any earlier one; returns the file's path.
pub fn save_admin_login(login: &AdminLogin) -> anyhow::Result<PathBuf> {
    let path = admin_login_path()?;
    write_private(&path, &serde_json::to_string_pretty(login)?)?;
    Ok(path)
}

/// Removes the stored admin login; `false` when there was none.
pub fn remove_admin_login() -> anyhow::Result<bool> {
    remove(&admin_login_path()?)
}

fn remove(path: &Path) -> anyhow::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// The local bearer of `meshgate proxy`: read from the config directory, or generated
/// (random, `mgl_` prefix) and stored there on first use.
pub fn local_bearer() -> anyhow::Result<String> {
    let path = config_dir()?.join("proxy-bearer");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let secret = meshgate_gateway::auth::generate_key().secret;
    let bearer = format!(
        "mgl_{}",
        &secret[meshgate_gateway::auth::KEY_PREFIX.len()..]
    );
    write_private(&path, &bearer)?;
    Ok(bearer)
}

/// Writes `text` to `path` readable by its owner only, creating the directory.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    meshgate_gateway::state::write_private(path, text)?;
    // An existing file keeps its mode when rewritten: set it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_round_trips_privately() {
        let dir = tempfile::tempdir().unwrap();
        // This crate's tests set MESHGATE_CONFIG_DIR only here.
        std::env::set_var("MESHGATE_CONFIG_DIR", dir.path());
        assert_eq!(load_login().unwrap(), None);
        let login = Login {
            url: "http://127.0.0.1:8787".into(),
            token: "mg_x".into(),
            project_id: None,
        };
        let path = save_login(&login).unwrap();
        assert_eq!(load_login().unwrap(), Some(login));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let bearer = local_bearer().unwrap();
        assert!(bearer.starts_with("mgl_") && bearer.len() > 20);
        assert_eq!(local_bearer().unwrap(), bearer, "reused, not regenerated");
        assert!(remove_login().unwrap());
        assert!(!remove_login().unwrap());

        assert_eq!(load_admin_login().unwrap(), None);
        let admin = AdminLogin {
            url: "http://127.0.0.1:8787".into(),
            admin_token: "mga_x".into(),
        };
        let path = save_admin_login(&admin).unwrap();
        assert_eq!(load_admin_login().unwrap(), Some(admin));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(remove_admin_login().unwrap());
        assert!(!remove_admin_login().unwrap());
    }
}
