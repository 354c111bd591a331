//! Who a request comes from, once `auth` has found out: a user with a
//! session or a token, its role, and the groups a backup client may use.

use model::access::may_access_group;
use model::{BackupGroup, Role};

use crate::error::AppError;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    /// Who exactly: `token:ID` or `user:NAME` (remote sessions belong to it).
    pub principal: String,
    pub role: Role,
    /// The groups a backup-client token may use.
    pub groups: Vec<BackupGroup>,
    /// CSRF token of the session, `None` for token callers.
    pub csrf: Option<String>,
}

impl Caller {
    /// Whether this caller may read or write `group`.
    pub fn may(&self, group: &BackupGroup) -> bool {
        may_access_group(self.role, &self.groups, group)
    }

    /// `may`, as an error for handlers.
    pub fn check(&self, group: &BackupGroup) -> Result<(), AppError> {
        if self.may(group) {
            Ok(())
        } else {
            Err(AppError::forbidden(format!("this token may not use group {group}")))
        }
    }
}
