//! The server's access records in the catalog: users, API tokens and login
//! sessions. Unlike snapshot rows these are not a cache — nothing else
//! holds them — so a rebuild never touches them.

use model::{ApiToken, Session, User};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError};
use serde::{Serialize, de::DeserializeOwned};

use crate::row::{SessionRowV1, TokenRowV1, UserRowV1};
use crate::schema::{SESSIONS, TOKENS, USERS};
use crate::{Catalog, CatalogError, corrupt};

pub(crate) type Records = TableDefinition<'static, &'static str, &'static [u8]>;

impl Catalog {
    /// Insert or replace a user.
    pub fn put_user(&self, user: &User) -> Result<(), CatalogError> {
        self.put(USERS, &user.name, &UserRowV1::from(user))
    }

    pub fn get_user(&self, name: &str) -> Result<Option<User>, CatalogError> {
        self.get::<UserRowV1, _>(USERS, name)
    }

    /// Every user, by name.
    pub fn list_users(&self) -> Result<Vec<User>, CatalogError> {
        self.list::<UserRowV1, _>(USERS)
    }

    pub fn remove_user(&self, name: &str) -> Result<bool, CatalogError> {
        self.remove(USERS, name)
    }

    /// Insert or replace a token.
    pub fn put_token(&self, token: &ApiToken) -> Result<(), CatalogError> {
        self.put(TOKENS, &token.id, &TokenRowV1::from(token))
    }

    pub fn get_token(&self, id: &str) -> Result<Option<ApiToken>, CatalogError> {
        self.get::<TokenRowV1, _>(TOKENS, id)
    }

    /// Every token, by id.
    pub fn list_tokens(&self) -> Result<Vec<ApiToken>, CatalogError> {
        self.list::<TokenRowV1, _>(TOKENS)
    }

    pub fn remove_token(&self, id: &str) -> Result<bool, CatalogError> {
        self.remove(TOKENS, id)
    }

    /// Store a session under the hash of its secret.
    pub fn put_session(&self, secret_hash: &str, session: &Session) -> Result<(), CatalogError> {
        self.put(SESSIONS, secret_hash, &SessionRowV1::from(session))
    }

    pub fn get_session(&self, secret_hash: &str) -> Result<Option<Session>, CatalogError> {
        self.get::<SessionRowV1, _>(SESSIONS, secret_hash)
    }

    pub fn remove_session(&self, secret_hash: &str) -> Result<bool, CatalogError> {
        self.remove(SESSIONS, secret_hash)
    }

    /// Drop every session that expired before `now`, and every session of
    /// `user` if given (a password change logs the user out everywhere).
    pub fn prune_sessions(&self, now: i64, user: Option<&str>) -> Result<usize, CatalogError> {
        let write = self.db.begin_write()?;
        let removed = {
            let mut table = write.open_table(SESSIONS)?;
            let stale: Vec<String> = table
                .iter()?
                .filter_map(|entry| {
                    let (key, value) = entry.ok()?;
                    let row: Result<SessionRowV1, _> = serde_json::from_slice(value.value());
                    let gone = match row {
                        Ok(row) => row.expires < now || user.is_some_and(|u| u == row.user),
                        Err(_) => true,
                    };
                    gone.then(|| key.value().to_owned())
                })
                .collect();
            for key in &stale {
                table.remove(key.as_str())?;
            }
            stale.len()
        };
        write.commit()?;
        Ok(removed)
    }

    pub(crate) fn put<R: Serialize>(&self, table: Records, key: &str, row: &R) -> Result<(), CatalogError> {
        let bytes = serde_json::to_vec(row).map_err(|e| corrupt(key, e.to_string()))?;
        let write = self.db.begin_write()?;
        write.open_table(table)?.insert(key, bytes.as_slice())?;
        write.commit()?;
        Ok(())
    }

    pub(crate) fn get<R, T>(&self, table: Records, key: &str) -> Result<Option<T>, CatalogError>
    where
        R: DeserializeOwned + TryInto<T, Error = String>,
    {
        let read = self.db.begin_read()?;
        let table = match read.open_table(table) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let found = table.get(key)?;
        found.map(|v| decode_record::<R, T>(key, v.value())).transpose()
    }

    pub(crate) fn list<R, T>(&self, table: Records) -> Result<Vec<T>, CatalogError>
    where
        R: DeserializeOwned + TryInto<T, Error = String>,
    {
        let read = self.db.begin_read()?;
        let table = match read.open_table(table) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        table
            .iter()?
            .map(|entry| {
                let (key, value) = entry?;
                decode_record::<R, T>(key.value(), value.value())
            })
            .collect()
    }

    pub(crate) fn remove(&self, table: Records, key: &str) -> Result<bool, CatalogError> {
        let write = self.db.begin_write()?;
        let existed = write.open_table(table)?.remove(key)?.is_some();
        write.commit()?;
        Ok(existed)
    }
}

fn decode_record<R, T>(key: &str, bytes: &[u8]) -> Result<T, CatalogError>
where
    R: DeserializeOwned + TryInto<T, Error = String>,
{
    let row: R = serde_json::from_slice(bytes).map_err(|e| corrupt(key, e.to_string()))?;
    row.try_into().map_err(|e| corrupt(key, e))
}
