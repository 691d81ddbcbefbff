//! `meshgate run -- CMD ARGS...`: runs a local command with the OpenAI and Anthropic SDK
//! variables pointing at the gateway (or at `meshgate proxy` with `--local`), and exits
//! with the command's exit code, or 128 + the signal that killed it.

use crate::devconfig;
use crate::devtarget;
use anyhow::Context;
use std::ffi::OsString;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Point the command at `meshgate proxy` on this machine, with its local bearer; the
    /// command then never sees the gateway credential (MESHGATE_TOKEN is removed).
    #[arg(long)]
    local: bool,
    /// The command and its arguments (after `--`).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

/// The variables set for the command; `None` removes one.
pub fn command_env(local: bool) -> anyhow::Result<Vec<(&'static str, Option<String>)>> {
    if local {
        let bearer = devconfig::local_bearer()?;
        return Ok(vec![
            (
                "OPENAI_BASE_URL",
                Some(devtarget::openai_base(&devtarget::local_proxy_url())),
            ),
            ("OPENAI_API_KEY", Some(bearer.clone())),
            (
                "ANTHROPIC_BASE_URL",
                Some(devtarget::anthropic_base(&devtarget::local_proxy_url())),
            ),
            ("ANTHROPIC_API_KEY", Some(bearer)),
            ("MESHGATE_TOKEN", None),
        ]);
    }
    let login = devtarget::resolve()?;
    let mut vars = vec![
        ("OPENAI_BASE_URL", Some(devtarget::openai_base(&login.url))),
        ("OPENAI_API_KEY", Some(login.token.clone())),
        (
            "ANTHROPIC_BASE_URL",
            Some(devtarget::anthropic_base(&login.url)),
        ),
        ("ANTHROPIC_API_KEY", Some(login.token.clone())),
        ("MESHGATE_URL", Some(login.url.clone())),
        ("MESHGATE_TOKEN", Some(login.token)),
    ];
    if let Some(project) = login.project_id {
        vars.push(("MESHGATE_PROJECT_ID", Some(project)));
    }
    Ok(vars)
}

/// The exit code a shell reports for a finished command.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return 128 + signal;
        }
    }
    status.code().unwrap_or(1)
}

/// Runs the command and exits the process with its code (returns only on failure to start).
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let (program, rest) = args
        .command
        .split_first()
        .context("no command given: meshgate run -- CMD ARGS...")?;
    let mut command = tokio::process::Command::new(program);
    command.args(rest);
    for (name, value) in command_env(args.local)? {
        match value {
            Some(v) => command.env(name, v),
            None => command.env_remove(name),
        };
    }
    // Ctrl-C and Ctrl-\ reach the whole foreground process group: the command decides
    // what to do with them, and meshgate waits for it rather than dying first.
    #[cfg(unix)]
    let _held = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::quit())?,
        )
    };
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run {}", program.to_string_lossy()))?;
    let status = child.wait().await.context("cannot wait for the command")?;
    std::process::exit(exit_code(status));
}
