//! Users, passwords, login sessions and API tokens: creating them, and
//! checking what a caller presents.
//!
//! Passwords are kept as Argon2id PHC strings. Tokens and session secrets
//! are 32 random bytes; only their blake3 hash is stored, and a presented
//! secret is compared by hash (`blake3::Hash` compares in constant time).
//!
//! Invariant: no secret is ever written to the catalog or a log in the clear.
//! Invariant: time is an argument (`now`, Unix seconds).

use anyhow::{Context, Result, bail};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use model::{ApiToken, BackupGroup, Role, Session, User};
use rand::RngCore;

use crate::Engine;

/// How long a dashboard login lasts.
pub const SESSION_SECONDS: i64 = 12 * 3600;

/// Token text: `cairn_<id>_<secret>` — the id finds the row, the secret
/// proves possession.
const TOKEN_PREFIX: &str = "cairn_";

/// What a new token may do.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub name: String,
    pub owner: String,
    pub role: Role,
    pub groups: Vec<BackupGroup>,
    pub expires: Option<i64>,
}

impl Engine {
    /// Create the `admin` user with a random password when no user exists
    /// yet; returns that password (to be shown once), or `None`.
    pub fn ensure_admin(&self, now: i64) -> Result<Option<String>> {
        if !self.catalog()?.list_users()?.is_empty() {
            return Ok(None);
        }
        let password = random_text(18);
        self.set_password("admin", &password, Role::Admin, now)?;
        Ok(Some(password))
    }

    /// Set the password of `name`, creating the user with `role` if new
    /// (an existing user keeps its role). Logs the user out everywhere.
    pub fn set_password(&self, name: &str, password: &str, role: Role, now: i64) -> Result<User> {
        check_user_name(name)?;
        if password.chars().count() < 8 {
            bail!("the password is too short: use at least 8 characters");
        }
        let catalog = self.catalog()?;
        let existing = catalog.get_user(name)?;
        let user = User {
            name: name.to_owned(),
            role: existing.as_ref().map_or(role, |u| u.role),
            password_hash: hash_password(password)?,
            created: existing.as_ref().map_or(now, |u| u.created),
        };
        catalog.put_user(&user)?;
        catalog.prune_sessions(now, Some(name))?;
        Ok(user)
    }

    pub fn users(&self) -> Result<Vec<User>> {
        Ok(self.catalog()?.list_users()?)
    }

    /// Remove a user, their sessions and their tokens. The last admin stays.
    pub fn remove_user(&self, name: &str, now: i64) -> Result<bool> {
        let catalog = self.catalog()?;
        let users = catalog.list_users()?;
        let Some(user) = users.iter().find(|u| u.name == name) else { return Ok(false) };
        if user.role == Role::Admin && users.iter().filter(|u| u.role == Role::Admin).count() == 1 {
            bail!("{name} is the last admin; make another admin first");
        }
        for token in catalog.list_tokens()?.into_iter().filter(|t| t.owner == name) {
            catalog.remove_token(&token.id)?;
        }
        catalog.prune_sessions(now, Some(name))?;
        Ok(catalog.remove_user(name)?)
    }

    /// Check a name and password; on success start a session and return its
    /// secret (for the cookie) with the session. Always does the work of a
    /// hash check, also for unknown users.
    pub fn login(&self, name: &str, password: &str, now: i64) -> Result<Option<(String, Session)>> {
        let catalog = self.catalog()?;
        let user = catalog.get_user(name)?;
        let stored = user.as_ref().map_or(DUMMY_HASH, |u| u.password_hash.as_str());
        let ok = verify_password(password, stored) && user.is_some();
        if !ok {
            return Ok(None);
        }
        catalog.prune_sessions(now, None)?;
        let secret = random_text(32);
        let session = Session {
            user: name.to_owned(),
            csrf: random_text(24),
            created: now,
            expires: now + SESSION_SECONDS,
        };
        catalog.put_session(&hash_secret(&secret), &session)?;
        Ok(Some((secret, session)))
    }

    /// The live session and its user for a cookie secret.
    pub fn session(&self, secret: &str, now: i64) -> Result<Option<(Session, User)>> {
        let catalog = self.catalog()?;
        let Some(session) = catalog.get_session(&hash_secret(secret))? else { return Ok(None) };
        if session.expires < now {
            return Ok(None);
        }
        Ok(catalog.get_user(&session.user)?.map(|u| (session, u)))
    }

    pub fn logout(&self, secret: &str) -> Result<()> {
        self.catalog()?.remove_session(&hash_secret(secret))?;
        Ok(())
    }

    /// Create a token; returns its full text (shown once) and its record.
    pub fn create_token(&self, spec: &TokenSpec, now: i64) -> Result<(String, ApiToken)> {
        if spec.role == Role::BackupClient && spec.groups.is_empty() {
            bail!("a backup-client token needs at least one group it may write to");
        }
        if spec.name.trim().is_empty() || spec.name.len() > 100 || spec.name.chars().any(char::is_control) {
            bail!("a token needs a name of 1 to 100 printable characters");
        }
        let id = random_text(8);
        let secret = random_text(32);
        let token = ApiToken {
            id: id.clone(),
            name: spec.name.clone(),
            owner: spec.owner.clone(),
            role: spec.role,
            groups: spec.groups.clone(),
            secret_hash: hash_secret(&secret),
            created: now,
            expires: spec.expires,
        };
        self.catalog()?.put_token(&token)?;
        Ok((format!("{TOKEN_PREFIX}{id}_{secret}"), token))
    }

    pub fn tokens(&self) -> Result<Vec<ApiToken>> {
        Ok(self.catalog()?.list_tokens()?)
    }

    pub fn revoke_token(&self, id: &str) -> Result<bool> {
        Ok(self.catalog()?.remove_token(id)?)
    }

    /// The token a bearer string names, if its secret matches and it has
    /// not expired.
    pub fn authenticate_token(&self, text: &str, now: i64) -> Result<Option<ApiToken>> {
        let Some((id, secret)) = text.strip_prefix(TOKEN_PREFIX).and_then(|t| t.split_once('_')) else {
            return Ok(None);
        };
        let Some(token) = self.catalog()?.get_token(id)? else { return Ok(None) };
        let presented = blake3::hash(secret.as_bytes());
        let Ok(stored) = blake3::Hash::from_hex(&token.secret_hash) else { return Ok(None) };
        if presented != stored || token.expires.is_some_and(|e| e < now) {
            return Ok(None);
        }
        Ok(Some(token))
    }
}

/// A valid Argon2id hash of a random password, checked against when the
/// user does not exist, so both paths cost the same.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$x8uaOXqu4hXaGLZ9bOBY8R2Ek2Lw2qPY8tzjPnn1QVc";

fn check_user_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if !ok {
        bail!("user name {name:?} is not allowed: use 1 to 64 letters, digits, '-', '_', '.' or '@'");
    }
    Ok(())
}

fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("{e}"))?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("hashing the password")?;
    Ok(hash.to_string())
}

fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

fn hash_secret(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

/// `bytes` random bytes as lowercase hex.
fn random_text(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_is_a_valid_argon2id_hash() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!verify_password("anything", DUMMY_HASH));
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h) && !verify_password("wrong horse", &h));
    }
}
