//! `--server`, `--token`, `--fingerprint`: the options of every command
//! that can work against a Cairn server instead of the local datastore.

use anyhow::{Result, anyhow};
use client::Remote;

/// `--server`, `--token`, `--fingerprint`, shared by the commands that can
/// work against a server.
#[derive(Debug, Clone, clap::Args)]
pub struct RemoteArgs {
    /// Work against a Cairn server (https://HOST:8007) instead of the local datastore.
    #[arg(long, env = "CAIRN_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// API token for --server (better passed in the environment than on the command line).
    #[arg(long, env = "CAIRN_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// The server certificate's SHA-256 fingerprint, as `cairn serve` prints it (aa:bb:…).
    #[arg(long, env = "CAIRN_FINGERPRINT", value_name = "SHA256")]
    pub fingerprint: Option<String>,
}

impl RemoteArgs {
    /// The server connection, if `--server` was given.
    pub fn connect(&self) -> Result<Option<Remote>> {
        let Some(url) = &self.server else { return Ok(None) };
        let token =
            self.token.as_deref().ok_or_else(|| anyhow!("--server needs --token (or CAIRN_TOKEN)"))?;
        Remote::connect(url, token, self.fingerprint.as_deref()).map(Some)
    }
}
