//! S3 credentials: from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`,
//! or from a file in the AWS shared-credentials layout. Never from the
//! command line, and never printed: the secret's `Debug` is redacted.

use std::fmt;
use std::path::Path;

use crate::{BucketError, Result};

/// Where the server and the CLI look when the environment names no key.
pub const DEFAULT_CREDENTIALS_FILE: &str = "/etc/cairn/s3-credentials";

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

impl Credentials {
    /// The environment's `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`
    /// when both are set, else the `[default]` profile of `file`.
    pub fn find(file: &Path) -> Result<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let (Some(id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            return Ok(Self { access_key_id: id, secret_access_key: Secret(secret) });
        }
        let text = std::fs::read_to_string(file).map_err(|e| {
            BucketError::Settings(format!(
                "no S3 credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set, and {} cannot be read ({e})",
                file.display()
            ))
        })?;
        Self::parse(&text).map_err(|e| BucketError::Settings(format!("{}: {e}", file.display())))
    }

    /// The `[default]` profile (or the lines before any section) of an
    /// AWS shared-credentials file:
    ///
    /// ```text
    /// [default]
    /// aws_access_key_id = GK…
    /// aws_secret_access_key = …
    /// ```
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let (mut id, mut secret) = (None, None);
        let mut section = String::from("default");
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_owned();
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(format!("line {}: expected KEY = VALUE", n + 1));
            };
            if section != "default" {
                continue;
            }
            match k.trim() {
                "aws_access_key_id" => id = Some(v.trim().to_owned()),
                "aws_secret_access_key" => secret = Some(v.trim().to_owned()),
                _ => {}
            }
        }
        match (id, secret) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
                Ok(Self { access_key_id: id, secret_access_key: Secret(secret) })
            }
            _ => Err("the [default] profile lacks aws_access_key_id or aws_secret_access_key".into()),
        }
    }
}
