//! `meshgate setup codex` and `meshgate setup claude`: pointing Codex CLI
//! (`$CODEX_HOME/config.toml`) and Claude Code (`$CLAUDE_CONFIG_DIR/settings.json`) at the
//! gateway or at the local proxy. Both edits keep the rest of the file and change nothing
//! on a second run.

use crate::devconfig;
use crate::devtarget;
use anyhow::Context;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The model the `meshgate` Codex profile uses unless `--model` says otherwise.
pub const DEFAULT_CODEX_MODEL: &str = "gpt-5";
/// The name of the provider and the profile written into Codex's config.
const CODEX_ENTRY: &str = "meshgate";

#[derive(Debug, clap::Subcommand)]
pub enum SetupCommand {
    /// Add or update a `meshgate` model provider and profile in Codex CLI's config.toml.
    Codex {
        /// Point Codex at `meshgate proxy` on this machine instead of the gateway.
        #[arg(long)]
        local: bool,
        /// The model of the `meshgate` profile.
        #[arg(long, default_value = DEFAULT_CODEX_MODEL)]
        model: String,
    },
    /// Write ANTHROPIC_BASE_URL and ANTHROPIC_AUTH_TOKEN into Claude Code's settings.json.
    Claude {
        /// Point Claude Code at `meshgate proxy` on this machine instead of the gateway.
        #[arg(long)]
        local: bool,
        /// Print the shell `export` lines (with the credential) instead of writing.
        #[arg(long)]
        print: bool,
    },
}

pub fn setup(command: SetupCommand) -> anyhow::Result<()> {
    match command {
        SetupCommand::Codex { local, model } => setup_codex(local, &model),
        SetupCommand::Claude { local, print } => setup_claude(local, print),
    }
}

fn home_dir() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .context("HOME is not set")
}

/// A tool's config directory: `$<var>` when set, else `~/<default>`.
fn tool_dir(var: &str, default: &str) -> anyhow::Result<PathBuf> {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => Ok(home_dir()?.join(default)),
    }
}

fn read_if_exists(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes `text` unless the file already holds it; `true` when it wrote.
fn write_if_changed(path: &Path, old: Option<&str>, text: &str) -> anyhow::Result<bool> {
    if old == Some(text) {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // A new file may hold a credential: readable by its owner only.
    meshgate_gateway::state::write_private_exact(path, text)?;
    Ok(true)
}

/// Applies `edit` to a file's text (empty when missing) and writes the result if it
/// differs; `true` when it wrote.
fn update_file(
    path: &Path,
    edit: impl FnOnce(&str) -> anyhow::Result<String>,
) -> anyhow::Result<bool> {
    let old = read_if_exists(path)?;
    let text = edit(old.as_deref().unwrap_or(""))
        .with_context(|| format!("cannot update {}", path.display()))?;
    let wrote = write_if_changed(path, old.as_deref(), &text)?;
    if wrote {
        println!("updated {}", path.display());
    }
    Ok(wrote)
}

/// The OpenAI base URL and the variable holding the credential Codex sends.
fn codex_target(local: bool) -> anyhow::Result<(String, &'static str)> {
    if local {
        return Ok((
            devtarget::openai_base(&devtarget::local_proxy_url()),
            "OPENAI_API_KEY",
        ));
    }
    Ok((
        devtarget::openai_base(&devtarget::resolve()?.url),
        "MESHGATE_TOKEN",
    ))
}

fn setup_codex(local: bool, model: &str) -> anyhow::Result<()> {
    let (base_url, env_key) = codex_target(local)?;
    let home = tool_dir("CODEX_HOME", ".codex")?;
    let config = home.join("config.toml");
    let profile = home.join(format!("{CODEX_ENTRY}.config.toml"));
    let provider_changed = update_file(&config, |t| codex_config(t, &base_url, env_key))?;
    let profile_changed = update_file(&profile, |t| codex_profile(t, model))?;
    let changed = provider_changed || profile_changed;
    if !changed {
        println!(
            "{} and {} are already up to date",
            config.display(),
            profile.display()
        );
    }
    println!("provider `{CODEX_ENTRY}`: {base_url}, credential from ${env_key}; profile `{CODEX_ENTRY}`: model {model}");
    if local {
        println!("start `meshgate proxy` and export the OPENAI_API_KEY it prints, then run:");
    } else {
        println!("export {env_key}=<your meshgate credential> (or use `meshgate run -- codex ...`), then run:");
    }
    println!("  codex --profile {CODEX_ENTRY}");
    Ok(())
}

/// Sets `key = value` in a table unless it already holds exactly that value, so that an
/// unchanged entry keeps its formatting and comments.
fn set_str(table: &mut dyn toml_edit::TableLike, key: &str, value: &str) {
    if table.get(key).and_then(|v| v.as_str()) != Some(value) {
        table.insert(key, toml_edit::value(value));
    }
}

/// Codex's `config.toml` with the `meshgate` model provider added or updated. A legacy
/// `[profiles.meshgate]` table is removed: Codex (0.134 and later) reads profiles from
/// `<name>.config.toml` and refuses `--profile meshgate` while that table exists.
pub fn codex_config(text: &str, base_url: &str, env_key: &str) -> anyhow::Result<String> {
    let mut doc: toml_edit::DocumentMut = text.parse().context("not valid TOML")?;
    let providers = doc.entry("model_providers").or_insert_with(|| {
        // `[model_providers.meshgate]` alone, without an empty `[model_providers]` header.
        let mut t = toml_edit::Table::new();
        t.set_implicit(true);
        toml_edit::Item::Table(t)
    });
    let provider = providers
        .as_table_like_mut()
        .context("`model_providers` is not a table")?
        .entry(CODEX_ENTRY)
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
        .as_table_like_mut()
        .context("`model_providers.meshgate` is not a table")?;
    set_str(provider, "name", "meshgate");
    set_str(provider, "base_url", base_url);
    set_str(provider, "env_key", env_key);
    set_str(provider, "wire_api", "responses");
    if let Some(profiles) = doc.get_mut("profiles").and_then(|p| p.as_table_like_mut()) {
        profiles.remove(CODEX_ENTRY);
        if profiles.is_empty() {
            doc.remove("profiles");
        }
    }
    Ok(doc.to_string())
}

/// The `meshgate` profile (`$CODEX_HOME/meshgate.config.toml`): the provider and model,
/// other keys kept.
pub fn codex_profile(text: &str, model: &str) -> anyhow::Result<String> {
    let mut doc: toml_edit::DocumentMut = text.parse().context("not valid TOML")?;
    set_str(doc.as_table_mut(), "model_provider", CODEX_ENTRY);
    set_str(doc.as_table_mut(), "model", model);
    Ok(doc.to_string())
}

/// The two variables Claude Code needs: the base URL and the bearer credential.
fn claude_env(local: bool) -> anyhow::Result<[(&'static str, String); 2]> {
    let (base, token) = if local {
        (
            devtarget::anthropic_base(&devtarget::local_proxy_url()),
            devconfig::local_bearer()?,
        )
    } else {
        let login = devtarget::resolve()?;
        (devtarget::anthropic_base(&login.url), login.token)
    };
    Ok([
        ("ANTHROPIC_BASE_URL", base),
        ("ANTHROPIC_AUTH_TOKEN", token),
    ])
}

/// A value quoted for POSIX shells.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn setup_claude(local: bool, print: bool) -> anyhow::Result<()> {
    let vars = claude_env(local)?;
    if print {
        for (name, value) in &vars {
            println!("export {name}={}", shell_quote(value));
        }
        return Ok(());
    }
    let path = tool_dir("CLAUDE_CONFIG_DIR", ".claude")?.join("settings.json");
    let old = read_if_exists(&path)?;
    let (text, stale_api_key) = claude_settings(old.as_deref(), &vars)
        .with_context(|| format!("cannot update {}", path.display()))?;
    let masked = devtarget::masked(&vars[1].1);
    if write_if_changed(&path, old.as_deref(), &text)? {
        println!(
            "updated {}: ANTHROPIC_BASE_URL={} ANTHROPIC_AUTH_TOKEN={masked}",
            path.display(),
            vars[0].1
        );
    } else {
        println!(
            "{} already points Claude Code at {}",
            path.display(),
            vars[0].1
        );
    }
    if stale_api_key {
        println!(
            "warning: its env block also sets ANTHROPIC_API_KEY, which Claude Code sends too: remove it"
        );
    }
    if local {
        println!("start `meshgate proxy`, then run `claude`");
    } else {
        println!("run `claude`: it now talks to the gateway");
    }
    Ok(())
}

/// Claude Code's settings with `vars` in the `env` block, every other key kept; also
/// whether the block sets ANTHROPIC_API_KEY (which would be sent beside the token).
pub fn claude_settings(
    text: Option<&str>,
    vars: &[(&str, String)],
) -> anyhow::Result<(String, bool)> {
    let mut settings: Value = match text {
        Some(t) if !t.trim().is_empty() => serde_json::from_str(t).context("not valid JSON")?,
        _ => Value::Object(Default::default()),
    };
    let root = settings
        .as_object_mut()
        .context("the settings are not a JSON object")?;
    let env = root
        .entry("env")
        .or_insert_with(|| Value::Object(Default::default()))
        .as_object_mut()
        .context("`env` is not a JSON object")?;
    for (name, value) in vars {
        env.insert((*name).to_string(), Value::String(value.clone()));
    }
    let stale_api_key = env.contains_key("ANTHROPIC_API_KEY");
    let mut out = serde_json::to_string_pretty(&settings)?;
    out.push('\n');
    // Unchanged content keeps the file as it is, even if formatted differently.
    if let Some(t) = text {
        if serde_json::from_str::<Value>(t).ok().as_ref() == Some(&settings) {
            return Ok((t.to_string(), stale_api_key));
        }
    }
    Ok((out, stale_api_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXISTING: &str = r#"# my codex config
model = "o3" # keep me

[model_providers.ollama]
name = "Ollama"
base_url = "http://localhost:11434/v1"

[profiles.fast]
model = "gpt-5-mini"
"#;

    #[test]
    fn codex_config_keeps_the_rest_and_is_idempotent() {
        let once = codex_config(EXISTING, "http://g/openai/v1", "MESHGATE_TOKEN").unwrap();
        let block = "[model_providers.meshgate]\nname = \"meshgate\"\nbase_url = \"http://g/openai/v1\"\nenv_key = \"MESHGATE_TOKEN\"\nwire_api = \"responses\"\n\n";
        assert_eq!(
            once.replacen(block, "", 1),
            EXISTING,
            "the rest kept byte for byte"
        );
        let doc: toml_edit::DocumentMut = once.parse().unwrap();
        let p = &doc["model_providers"]["meshgate"];
        assert_eq!(p["base_url"].as_str(), Some("http://g/openai/v1"));
        assert_eq!(p["env_key"].as_str(), Some("MESHGATE_TOKEN"));
        assert_eq!(p["wire_api"].as_str(), Some("responses"));
        let twice = codex_config(&once, "http://g/openai/v1", "MESHGATE_TOKEN").unwrap();
        assert_eq!(once, twice);
        let moved = codex_config(&once, "http://h/openai/v1", "MESHGATE_TOKEN").unwrap();
        assert!(moved.contains("base_url = \"http://h/openai/v1\""));
        assert!(!moved.contains("http://g/"));
    }

    #[test]
    fn codex_config_from_nothing_has_no_empty_parent_table() {
        let text = codex_config("", "http://g/openai/v1", "MESHGATE_TOKEN").unwrap();
        assert!(!text.contains("[model_providers]\n"), "{text}");
        assert!(text.contains("[model_providers.meshgate]"), "{text}");
    }

    #[test]
    fn codex_config_drops_only_our_legacy_profile_table() {
        let legacy = "[profiles.meshgate]\nmodel = \"x\"\n\n[profiles.fast]\nmodel = \"y\"\n";
        let text = codex_config(legacy, "http://g/openai/v1", "MESHGATE_TOKEN").unwrap();
        assert!(!text.contains("[profiles.meshgate]"), "{text}");
        assert!(text.contains("[profiles.fast]"), "{text}");
        let alone = codex_config("[profiles.meshgate]\nmodel = \"x\"\n", "u", "K").unwrap();
        assert!(!alone.contains("profiles"), "{alone}");
    }

    #[test]
    fn codex_profile_sets_provider_and_model() {
        let text = codex_profile("# mine\napproval_policy = \"never\"\n", "gpt-5").unwrap();
        assert!(
            text.starts_with("# mine\napproval_policy = \"never\"\n"),
            "{text}"
        );
        assert!(text.contains("model_provider = \"meshgate\""), "{text}");
        assert!(text.contains("model = \"gpt-5\""), "{text}");
        assert_eq!(codex_profile(&text, "gpt-5").unwrap(), text);
    }

    #[test]
    fn claude_settings_merge_into_env() {
        let vars = [("ANTHROPIC_BASE_URL", "http://g/anthropic".to_string())];
        let old = r#"{"model": "opus", "env": {"FOO": "1"}}"#;
        let (text, stale) = claude_settings(Some(old), &vars).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["model"], "opus");
        assert_eq!(v["env"]["FOO"], "1");
        assert_eq!(v["env"]["ANTHROPIC_BASE_URL"], "http://g/anthropic");
        assert!(!stale);
        assert_eq!(claude_settings(Some(&text), &vars).unwrap().0, text);
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
