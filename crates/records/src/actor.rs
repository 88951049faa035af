//! Who is asking: the authenticated principal of a request.

/// The kind of principal behind a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorKind {
    /// The operator's full-access system token (`ironchart admin token`).
    System,
    /// A user (users and roles arrive with the access-policy work; the token already names them).
    User(String),
}

/// An authenticated caller. Created only by [`crate::Records::authenticate`] and by the command
/// line's local operator path, so holding one means the token was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorKind,
    /// SMART-style scopes granted to this token (e.g. `system/*.cruds`).
    pub scopes: Vec<String>,
    /// Expiry of the token, ms since the epoch.
    pub expires_at: i64,
}

impl Actor {
    /// The local operator running a command against their own data directory (import, demo
    /// seeding): full access, like the system token.
    pub fn local_operator() -> Actor {
        Actor {
            kind: ActorKind::System,
            scopes: vec!["system/*.cruds".to_string()],
            expires_at: i64::MAX,
        }
    }
}
