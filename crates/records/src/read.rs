//! Reads, searches and history: what is stored, as the actor may see it, audited.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ironchart_fhir::search::{ParamRef, SearchQuery};
use ironchart_fhir::{Id, Instant, ResourceType};
use ironchart_security::scope::Interaction;
use ironchart_store::{Cursor, StoreError, StoredVersion};
use tracing::instrument;

use crate::actor::Actor;
use crate::audit::{AuditAction, AuditEntry, Outcome};
use crate::policy::{self, Hidden};
use crate::resource::{HistoryPage, Resource, ResourcePage};
use crate::{Records, RecordsError, Result};

/// Whose history: everything the actor may read, one type's, or one resource's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryScope {
    System,
    Type(ResourceType),
    Instance(ResourceType, Id),
}

impl HistoryScope {
    fn to_store(&self) -> ironchart_store::HistoryScope {
        match self {
            HistoryScope::System => ironchart_store::HistoryScope::System,
            HistoryScope::Type(t) => ironchart_store::HistoryScope::Type(t.to_string()),
            HistoryScope::Instance(t, id) => {
                ironchart_store::HistoryScope::Instance(t.to_string(), id.to_string())
            }
        }
    }
}

impl Records {
    /// A stored version as handed out: its body opened.
    pub(crate) async fn reveal(&self, v: StoredVersion) -> Result<Resource> {
        let json = match &v.body {
            Some(b) => Some(
                self.keys
                    .open(&self.store, &v.res_type, &v.res_id, v.version, b)
                    .await?,
            ),
            None => None,
        };
        // The store holds only what the door wrote: a type or id outside the grammar is damage.
        let damaged =
            || RecordsError::Integrity("a stored resource has an invalid type or id".into());
        Ok(Resource {
            resource_type: ResourceType::parse(&v.res_type).ok_or_else(damaged)?,
            id: Id::from_string(v.res_id).ok_or_else(damaged)?,
            version: v.version,
            last_updated: Instant::from_millis(v.last_updated),
            deleted: v.deleted,
            method: v.method,
            json,
        })
    }

    /// Stored versions as `actor` may see them: opened, then redacted for its role.
    async fn reveal_all(
        &self,
        actor: &Actor,
        versions: Vec<StoredVersion>,
    ) -> Result<Vec<Resource>> {
        let mut out = Vec::with_capacity(versions.len());
        for v in versions {
            out.push(policy::redact(actor, self.reveal(v).await?));
        }
        Ok(out)
    }

    /// The current version of a resource; deleted resources are [`RecordsError::Gone`].
    #[instrument(skip_all, fields(resource_type = resource_type.as_str()))]
    pub async fn read(
        &self,
        actor: &Actor,
        resource_type: ResourceType,
        id: &Id,
    ) -> Result<Resource> {
        let mut patient = None;
        let result = self
            .read_inner(actor, resource_type, id, None, &mut patient)
            .await;
        let hidden = hidden_by_policy(&result, &patient);
        self.audited(actor, result, |outcome, r| {
            AuditEntry::new(
                AuditAction::Read,
                if hidden { Outcome::Denied } else { outcome },
            )
            .resource(&resource_type, id, r.map(|r| r.version))
            .patients(patient)
        })
        .await
    }

    /// A specific version of a resource.
    pub async fn vread(
        &self,
        actor: &Actor,
        resource_type: ResourceType,
        id: &Id,
        version: i64,
    ) -> Result<Resource> {
        let mut patient = None;
        let result = self
            .read_inner(actor, resource_type, id, Some(version), &mut patient)
            .await;
        let hidden = hidden_by_policy(&result, &patient);
        self.audited(actor, result, |outcome, _| {
            AuditEntry::new(
                AuditAction::Vread,
                if hidden { Outcome::Denied } else { outcome },
            )
            .resource(&resource_type, id, Some(version))
            .patients(patient)
        })
        .await
    }

    async fn read_inner(
        &self,
        actor: &Actor,
        resource_type: ResourceType,
        id: &Id,
        version: Option<i64>,
        patient: &mut Option<String>,
    ) -> Result<Resource> {
        policy::check(actor, self.now(), &resource_type, Interaction::Read)?;
        let not_found = || match version {
            None => RecordsError::NotFound(resource_type.to_string(), id.to_string()),
            Some(v) => {
                RecordsError::NotFound(resource_type.to_string(), format!("{id}/_history/{v}"))
            }
        };
        let stored = match version {
            None => self.store.read(&resource_type, id).await?,
            Some(v) => self.store.vread(&resource_type, id, v).await?,
        };
        let Some(v) = stored else {
            return Err(not_found());
        };
        patient.clone_from(&v.patient);
        let vis = self.visibility(actor).await?;
        match policy::hidden(actor, &vis, &v) {
            Some(Hidden::NotThere) => return Err(not_found()),
            Some(Hidden::Restricted) => {
                return Err(RecordsError::Restricted(v.patient.unwrap_or_default()));
            }
            None => {}
        }
        if v.deleted {
            return Err(RecordsError::Gone(
                resource_type.to_string(),
                id.to_string(),
            ));
        }
        Ok(policy::redact(actor, self.reveal(v).await?))
    }

    /// Runs a search; `cursor` continues from a previous page.
    #[instrument(skip_all, fields(resource_type = %query.resource_type))]
    pub async fn search(
        &self,
        actor: &Actor,
        query: &SearchQuery,
        cursor: Option<&str>,
    ) -> Result<ResourcePage> {
        // The patients a search names are what its answer is about, even when it finds
        // nothing ("does this patient have that condition?" answered by a count of 0).
        let mut patients = named_patients(query);
        let result = self.search_inner(actor, query, cursor, &mut patients).await;
        self.audited(actor, result, |outcome, page| {
            let mut detail = search_detail(query);
            if let Some(p) = page {
                detail.push_str(&format!("; {} found", p.matches.len()));
                if let Some(total) = p.total {
                    detail.push_str(&format!("; total {total}"));
                }
            }
            AuditEntry::new(AuditAction::Search, outcome)
                .res_type(&query.resource_type)
                .patients(patients)
                .detail(detail)
        })
        .await
    }

    async fn search_inner(
        &self,
        actor: &Actor,
        query: &SearchQuery,
        cursor: Option<&str>,
        patients: &mut Vec<String>,
    ) -> Result<ResourcePage> {
        policy::check(actor, self.now(), &query.resource_type, Interaction::Search)?;
        policy::check_search(actor, query)?;
        // A reference given as an absolute URL on our own base means the local resource.
        let localized = self.base_url().and_then(|b| localize_query(query, b));
        let query = localized.as_ref().unwrap_or(query);
        let vis = self.visibility(actor).await?;
        // Confined to one compartment, an answer can tell nothing about anyone else.
        if let Some(c) = &vis.compartment {
            patients.retain(|p| *p == c.patient);
        }
        let cursor = cursor.map(Cursor::decode).transpose()?;
        let page = self.store.search(query, cursor.as_ref(), &vis).await?;
        patients.extend(
            page.matches
                .iter()
                .chain(&page.included)
                .filter_map(|v| v.patient.clone()),
        );
        // A count or total covers matches the page does not show: the patients of all of them
        // are what the number is about.
        if page
            .total
            .is_some_and(|t| t > 0 && t as usize > page.matches.len())
        {
            match page.counted_patients {
                // Found as the matches were counted: all of them, so that the entry can say
                // how many it does not list.
                Some(counted) => patients.extend(counted),
                None => patients.extend(
                    self.store
                        .match_patients(query, &vis, crate::audit::MAX_AUDITED_PATIENTS + 1)
                        .await?,
                ),
            }
        }
        Ok(ResourcePage {
            matches: self.reveal_all(actor, page.matches).await?,
            included: self.reveal_all(actor, page.included).await?,
            next: page.next.map(|c| c.encode()),
            previous: page.previous.map(|c| c.encode()),
            total: page.total,
        })
    }

    /// History, newest first. `since` in ms; `cursor` continues a previous page.
    pub async fn history(
        &self,
        actor: &Actor,
        scope: &HistoryScope,
        since: Option<i64>,
        count: usize,
        cursor: Option<&str>,
    ) -> Result<HistoryPage> {
        let mut patients = Vec::new();
        let result = self
            .history_inner(actor, scope, since, count, cursor, &mut patients)
            .await;
        self.audited(actor, result, |outcome, _| {
            let entry = AuditEntry::new(AuditAction::History, outcome).patients(patients);
            match scope {
                HistoryScope::System => entry,
                HistoryScope::Type(t) => entry.res_type(t),
                HistoryScope::Instance(t, id) => entry.resource(t, id, None),
            }
        })
        .await
    }

    async fn history_inner(
        &self,
        actor: &Actor,
        scope: &HistoryScope,
        since: Option<i64>,
        count: usize,
        cursor: Option<&str>,
        patients: &mut Vec<String>,
    ) -> Result<HistoryPage> {
        let vis = self.visibility(actor).await?;
        match scope {
            HistoryScope::System => {
                // Restricted, inside the query, to the types the actor may read.
                policy::live(actor, self.now())?;
            }
            HistoryScope::Type(t) => {
                policy::check(actor, self.now(), t, Interaction::Read)?;
            }
            HistoryScope::Instance(t, id) => {
                policy::check(actor, self.now(), t, Interaction::Read)?;
                let not_found = || RecordsError::NotFound(t.to_string(), id.to_string());
                match self.store.read(t, id).await? {
                    None => return Err(not_found()),
                    Some(v) => match policy::hidden(actor, &vis, &v) {
                        Some(Hidden::NotThere) => return Err(not_found()),
                        Some(Hidden::Restricted) => {
                            return Err(RecordsError::Restricted(v.patient.unwrap_or_default()));
                        }
                        None => {}
                    },
                }
            }
        }
        let after = cursor.map(decode_history_cursor).transpose()?;
        let mut rows = self
            .store
            .history(
                &scope.to_store(),
                since,
                after,
                count.saturating_add(1),
                &vis,
            )
            .await?;
        let mut more = rows.len() > count;
        rows.truncate(count);
        // A page of large versions ends where their bodies reach the byte bound.
        let within = ironchart_store::within_bytes(rows.iter(), ironchart_store::MAX_PAGE_BYTES);
        if within < rows.len() {
            rows.truncate(within);
            more = true;
        }
        let next = if more {
            rows.last()
                .map(|v| encode_history_cursor(v.last_updated, v.rid, v.version))
        } else {
            None
        };
        let total = if cursor.is_none() && !more {
            Some(rows.len() as i64)
        } else {
            Some(
                self.store
                    .history_count(&scope.to_store(), since, &vis)
                    .await?,
            )
        };
        patients.extend(rows.iter().filter_map(|v| v.patient.clone()));
        Ok(HistoryPage {
            entries: self.reveal_all(actor, rows).await?,
            next,
            total,
        })
    }
}

/// Whether a read failed because policy hid an existing resource (answered as not found, but
/// audited as denied).
fn hidden_by_policy<T>(result: &Result<T>, patient: &Option<String>) -> bool {
    matches!(result, Err(RecordsError::NotFound(..))) && patient.is_some()
}

/// `query` with its absolute reference values on `base` made local (`Patient/1`); `None` when
/// it has none.
fn localize_query(query: &SearchQuery, base: &str) -> Option<SearchQuery> {
    use ironchart_fhir::search::{FilterTest, FilterValue};
    let local = |v: &FilterValue| match v {
        FilterValue::ReferenceUrl(u) => u
            .strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(ironchart_fhir::reference::parse_reference)
            .filter(|p| p.base.is_none())
            .map(|p| FilterValue::Reference {
                target_type: Some(p.resource_type.to_string()),
                id: p.id.to_string(),
            }),
        _ => None,
    };
    let mentions = query.filters.iter().any(|f| match &f.test {
        FilterTest::AnyOf(vs) | FilterTest::NoneOf(vs) => vs.iter().any(|v| local(v).is_some()),
        _ => false,
    });
    if !mentions {
        return None;
    }
    let mut q = query.clone();
    for f in &mut q.filters {
        if let FilterTest::AnyOf(vs) | FilterTest::NoneOf(vs) = &mut f.test {
            for v in vs.iter_mut() {
                if let Some(l) = local(v) {
                    *v = l;
                }
            }
        }
    }
    Some(q)
}

/// The patients a search names: the ids of references to a Patient (`patient=X`,
/// `subject=Patient/X`, a bare id on a parameter that can point to a Patient) and `_id` of a
/// Patient search.
pub(crate) fn named_patients(query: &SearchQuery) -> Vec<String> {
    use ironchart_fhir::SearchParamKind;
    use ironchart_fhir::search::{FilterTest, FilterValue};
    let mut out = Vec::new();
    for filter in &query.filters {
        let FilterTest::AnyOf(values) = &filter.test else {
            continue;
        };
        let names_patients = match filter.param {
            ParamRef::Id => query.resource_type == "Patient",
            ParamRef::Indexed(def) => {
                def.kind == SearchParamKind::Reference && def.targets.contains(&"Patient")
            }
            ParamRef::LastUpdated => false,
        };
        if !names_patients {
            continue;
        }
        for value in values {
            match value {
                FilterValue::Id(id) => out.push(id.clone()),
                FilterValue::Reference { target_type, id }
                    if target_type.as_deref().is_none_or(|t| t == "Patient")
                        && ironchart_fhir::is_valid_id(id) =>
                {
                    out.push(id.clone())
                }
                _ => {}
            }
        }
    }
    out
}

/// The names of a search's parameters (never their values: those can be health data).
fn search_detail(query: &SearchQuery) -> String {
    let mut names: Vec<&str> = query
        .filters
        .iter()
        .map(|f| match f.param {
            ParamRef::Id => "_id",
            ParamRef::LastUpdated => "_lastUpdated",
            ParamRef::Indexed(def) => def.name,
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    ["params=", &names.join(",")].concat()
}

pub(crate) fn encode_history_cursor(last_updated: i64, rid: i64, version: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("h{last_updated}.{rid}.{version}"))
}

pub(crate) fn decode_history_cursor(text: &str) -> Result<(i64, i64, i64)> {
    let bad = || RecordsError::from(StoreError::BadCursor);
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
    let s = String::from_utf8(bytes).map_err(|_| bad())?;
    let rest = s.strip_prefix('h').ok_or_else(bad)?;
    let mut parts = rest.split('.').map(|p| p.parse::<i64>());
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c)), None) => Ok((a, b, c)),
        _ => Err(bad()),
    }
}
