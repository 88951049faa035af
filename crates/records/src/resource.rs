//! Resources as the service hands them out: the stored JSON plus its version facts.

use ironchart_fhir::{Id, Instant, ResourceType};

/// One version of a resource. `json` is the full resource (with `meta.versionId` and
/// `meta.lastUpdated`), or `None` for a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub resource_type: ResourceType,
    pub id: Id,
    pub version: i64,
    pub last_updated: Instant,
    pub deleted: bool,
    /// `POST`, `PUT` or `DELETE`.
    pub method: String,
    pub json: Option<Vec<u8>>,
}

impl Resource {
    /// The resource as a JSON value (`Value::Null` for a deletion or an unreadable body).
    pub fn value(&self) -> serde_json::Value {
        self.json
            .as_deref()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(serde_json::Value::Null)
    }
}

/// The result of a create or update.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub resource: Resource,
    /// Whether the write created the resource (201) rather than updating it (200).
    pub created: bool,
}

/// One page of search results.
#[derive(Debug, Clone, Default)]
pub struct ResourcePage {
    pub matches: Vec<Resource>,
    pub included: Vec<Resource>,
    /// Opaque cursors for the next and previous pages.
    pub next: Option<String>,
    pub previous: Option<String>,
    pub total: Option<i64>,
}

/// One page of history, newest first.
#[derive(Debug, Clone, Default)]
pub struct HistoryPage {
    pub entries: Vec<Resource>,
    pub next: Option<String>,
    pub total: Option<i64>,
}
