//! Who may do what on a Cairn server: users, their roles, API tokens and
//! login sessions, and the pure rule that decides whether a caller may
//! touch a group.
//!
//! Invariant: secrets never live here in the clear — a user carries an
//! Argon2id hash, a token or session only the blake3 of its secret.

use crate::BackupGroup;

/// What a caller may do. Ordered from most to least powerful, but
/// `BackupClient` is not simply weaker than `Auditor`: it may write, but
/// only to its own groups, and read nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, including users, tokens and policies.
    Admin,
    /// Run and manage jobs, backups, verify, prune, gc; no user management.
    Operator,
    /// Read everything, change nothing.
    Auditor,
    /// Back up to and restore from its own groups only.
    BackupClient,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Auditor, Role::BackupClient];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Auditor => "auditor",
            Self::BackupClient => "backup-client",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// A person who logs in to the dashboard (or whose tokens act for them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// PHC string of an Argon2id hash.
    pub password_hash: String,
    /// Unix seconds.
    pub created: i64,
}

/// A bearer token for scripts and remote clients. The secret is shown once
/// at creation; only its blake3 hash is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Public part of the token, the lookup key (`cairn_<id>_<secret>`).
    pub id: String,
    /// A label chosen by its creator (`web01 nightly`).
    pub name: String,
    /// The user who created it.
    pub owner: String,
    pub role: Role,
    /// For `BackupClient`: the groups it may write and read
    /// (`TYPE/ID` in the root namespace, or `ns/NAME/TYPE/ID`).
    pub groups: Vec<BackupGroup>,
    /// blake3 of the secret part, hex.
    pub secret_hash: String,
    pub created: i64,
    /// Unix seconds; `None` for a token that never expires.
    pub expires: Option<i64>,
}

/// A logged-in browser. The cookie holds the secret; the catalog its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    /// Sent back with every state-changing form.
    pub csrf: String,
    pub created: i64,
    pub expires: i64,
}

/// Whether a caller with `role` (and, for backup clients, `groups`) may
/// read or write `group`.
pub fn may_access_group(role: Role, groups: &[BackupGroup], group: &BackupGroup) -> bool {
    match role {
        Role::Admin | Role::Operator | Role::Auditor => true,
        Role::BackupClient => groups.iter().any(|g| g == group),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Namespace;

    #[test]
    fn roles_round_trip_and_clients_see_only_their_groups() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
        let ns = Namespace::root();
        let mine = BackupGroup::parse("host/web01", &ns).unwrap();
        let other = BackupGroup::parse("host/db01", &ns).unwrap();
        assert!(may_access_group(Role::BackupClient, std::slice::from_ref(&mine), &mine));
        assert!(!may_access_group(Role::BackupClient, std::slice::from_ref(&mine), &other));
        assert!(may_access_group(Role::Auditor, &[], &other));
    }
}
