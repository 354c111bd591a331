//! Users and API tokens: `cairn user list --json`, `cairn token list
//! --json` and the API's `/users` and `/tokens`. Secrets never appear: a
//! token's text only in the answer that created it.

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct UserJson {
    pub name: String,
    pub role: &'static str,
    pub created: String,
}

impl From<&model::User> for UserJson {
    fn from(u: &model::User) -> Self {
        Self { name: u.name.clone(), role: u.role.as_str(), created: model::time::format_rfc3339(u.created) }
    }
}

#[derive(Debug, Serialize)]
pub struct TokenJson {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub role: &'static str,
    pub groups: Vec<String>,
    pub created: String,
    pub expires: Option<String>,
    /// The full token: present only in the answer that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl From<&model::ApiToken> for TokenJson {
    fn from(t: &model::ApiToken) -> Self {
        Self {
            id: t.id.clone(),
            name: t.name.clone(),
            owner: t.owner.clone(),
            role: t.role.as_str(),
            groups: t.groups.iter().map(ToString::to_string).collect(),
            created: model::time::format_rfc3339(t.created),
            expires: t.expires.map(model::time::format_rfc3339),
            token: None,
        }
    }
}
