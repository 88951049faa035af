//! Who is asking: the authenticated principal of a request, with what it may do (its scopes),
//! whose record it is confined to (its patient context) and where the request came from.

use ironchart_security::scope::{Role, Scopes};

/// The kind of principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorKind {
    /// The operator's full-access system token (`ironchart admin token` without `--user`), or
    /// the operator running a command on their own data directory.
    System,
    /// A signed-in user or a user's token.
    User { id: i64, username: String },
    /// Nobody yet (a failed sign-in, a request without credentials): only ever audited.
    Anonymous,
}

/// An authenticated caller. Created only inside this crate (from a checked token or session, or
/// for the local operator), so holding one means the credentials were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub(crate) kind: ActorKind,
    pub(crate) roles: Vec<Role>,
    pub(crate) scopes: Scopes,
    /// The patient whose compartment a `patient/` scoped actor is confined to.
    pub(crate) patient: Option<String>,
    /// Expiry of the credential, ms since the epoch.
    pub(crate) expires_at: i64,
    pub(crate) source: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) purpose: Option<String>,
}

/// The operator running a command on their own data directory (import, demo seeding, user
/// and key administration): full access, like the system token, and audited as `system` with
/// the source `local`. Only [`crate::Records::open_local`] hands one out — to the command line,
/// which opened the database with the operator's own master key — so no code that serves
/// requests can make one. Everything done with it goes through the same policy and audit as
/// any other actor.
#[derive(Debug)]
pub struct LocalOperator {
    actor: Actor,
}

impl LocalOperator {
    pub(crate) fn new() -> LocalOperator {
        LocalOperator {
            actor: Actor::local_operator(),
        }
    }

    /// The operator as an actor, for the operations they run.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }
}

impl std::ops::Deref for LocalOperator {
    type Target = Actor;
    fn deref(&self) -> &Actor {
        &self.actor
    }
}

impl Actor {
    /// The local operator (see [`LocalOperator`]); inside this crate only, for work the
    /// service does on the operator's behalf (a reindex at start, setup).
    pub(crate) fn local_operator() -> Actor {
        Actor {
            kind: ActorKind::System,
            roles: Vec::new(),
            scopes: Scopes::parse("system/*.cruds").unwrap_or_else(|_| Scopes::none()),
            patient: None,
            expires_at: i64::MAX,
            source: Some("local".into()),
            request_id: None,
            purpose: None,
        }
    }

    /// Nobody: the actor of failed sign-ins and refused requests, for the audit log.
    pub fn anonymous() -> Actor {
        Actor {
            kind: ActorKind::Anonymous,
            roles: Vec::new(),
            scopes: Scopes::none(),
            patient: None,
            expires_at: 0,
            source: None,
            request_id: None,
            purpose: None,
        }
    }

    /// The same actor, for one request: its client address and request id (both audited).
    pub fn for_request(mut self, source: Option<String>, request_id: Option<String>) -> Actor {
        self.source = source;
        self.request_id = request_id;
        self
    }

    /// The same actor, stating a purpose of use (audited).
    pub fn with_purpose(mut self, purpose: Option<String>) -> Actor {
        self.purpose = purpose;
        self
    }

    pub fn kind(&self) -> &ActorKind {
        &self.kind
    }

    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    pub fn patient(&self) -> Option<&str> {
        self.patient.as_deref()
    }

    pub fn username(&self) -> Option<&str> {
        match &self.kind {
            ActorKind::User { username, .. } => Some(username),
            _ => None,
        }
    }

    pub(crate) fn user_id(&self) -> Option<i64> {
        match &self.kind {
            ActorKind::User { id, .. } => Some(*id),
            _ => None,
        }
    }

    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    pub fn purpose(&self) -> Option<&str> {
        self.purpose.as_deref()
    }

    pub fn is_system(&self) -> bool {
        self.kind == ActorKind::System
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// How the audit log names the actor.
    pub(crate) fn audit_name(&self) -> String {
        match &self.kind {
            ActorKind::System => "system".into(),
            ActorKind::User { username, .. } => ["user:", username].concat(),
            ActorKind::Anonymous => "anonymous".into(),
        }
    }

    pub(crate) fn audit_role(&self) -> Option<String> {
        if self.roles.is_empty() {
            return match self.kind {
                ActorKind::System => Some("system".into()),
                _ => None,
            };
        }
        Some(
            self.roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        )
    }
}
