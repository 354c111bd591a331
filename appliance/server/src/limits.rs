//! How much of the server one caller may hold at once: remote sessions,
//! chunk uploads in flight, password checks. The `[limits]` table of
//! `cairn.toml` sets them; `docs/security.md` says why each exists.
//!
//! A caller is a principal: one API token, or one logged-in user. Tokens
//! owned by the same user do not share a budget (a site often makes every
//! host's token under `admin`), so one host cannot use up another's.

use serde::Deserialize;

/// `[limits]` in `cairn.toml`; every key optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Remote backup sessions open at once, all callers together.
    pub backup_sessions: usize,
    /// Reader sessions (restores, change detection) open at once, all
    /// callers together.
    pub reader_sessions: usize,
    /// Backup sessions one caller may hold open.
    pub backup_sessions_per_caller: usize,
    /// Reader sessions one caller may hold open (each backup session
    /// opens one for the group's previous snapshot).
    pub reader_sessions_per_caller: usize,
    /// Chunk uploads one caller may have in flight; each holds up to a
    /// 16 MiB body and a 16 MiB buffer to check it.
    pub uploads_per_caller: usize,
    /// Password checks (Argon2id, 19 MiB each) running at once; 0 means
    /// one per core.
    pub password_checks: usize,
    /// Login attempts waiting for a password check; beyond it, 429.
    pub login_queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            backup_sessions: 128,
            reader_sessions: 256,
            backup_sessions_per_caller: 4,
            reader_sessions_per_caller: 16,
            uploads_per_caller: protocol::DEFAULT_UPLOADS,
            password_checks: 0,
            login_queue: 32,
        }
    }
}

impl Limits {
    /// Refuse limits that would stop the server from working at all.
    pub fn check(&self) -> anyhow::Result<()> {
        let named = [
            ("backup_sessions", self.backup_sessions),
            ("reader_sessions", self.reader_sessions),
            ("backup_sessions_per_caller", self.backup_sessions_per_caller),
            ("reader_sessions_per_caller", self.reader_sessions_per_caller),
            ("uploads_per_caller", self.uploads_per_caller),
            ("login_queue", self.login_queue),
        ];
        for (name, value) in named {
            if value == 0 {
                anyhow::bail!("[limits] {name} must be at least 1");
            }
        }
        Ok(())
    }

    /// Password checks at once: the setting, or the number of cores.
    pub fn password_checks(&self) -> usize {
        match self.password_checks {
            0 => engine::target::cores(),
            n => n,
        }
    }
}
