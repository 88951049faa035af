//! Rebuilding the search index when what extraction produces changes (a new
//! [`INDEX_VERSION`]: names found by any word, bare references keeping their id, resources about
//! several patients in no compartment …). It runs in the background after start, in batches that
//! let writes in between, and goes on where it stopped after a restart; a resource written
//! meanwhile was indexed by its write and is left as it is. Searches see each batch's resources
//! with their new index as soon as the batch commits.

use ironchart_fhir::extract::{INDEX_VERSION, IndexEntry, extract};
use ironchart_store::Reindexed;

use crate::write::{compartment_patient, localize};
use crate::{Records, RecordsError, Result};

/// The index version the stored index was built with.
const VERSION_SETTING: &str = "index.version";
/// The last resource (`rid`) a rebuild under way has done.
const PROGRESS_SETTING: &str = "index.rebuilt_up_to";
const BATCH: usize = 500;

/// How long a background reindex waits for the server's base URL before it starts without.
const WAIT_FOR_BASE: std::time::Duration = std::time::Duration::from_secs(30);

impl Records {
    /// Starts rebuilding the search index in the background when it was built by an earlier
    /// version of ironchart (a new, empty database is marked current at once).
    pub(crate) async fn start_reindex_if_needed(&self) -> Result<()> {
        let built = self
            .store
            .setting(VERSION_SETTING)
            .await?
            .and_then(|v| v.parse::<u32>().ok());
        if built.is_some_and(|v| v >= INDEX_VERSION) {
            return Ok(());
        }
        if built.is_none() && !self.store.has_resources().await? {
            self.store
                .set_setting(VERSION_SETTING, &INDEX_VERSION.to_string())
                .await?;
            return Ok(());
        }
        let records = self.clone();
        tokio::spawn(async move {
            // An absolute reference on our own base is indexed as the local resource: wait (a
            // little) for the server to say what its base is — it does so right after opening.
            // A process that never does (a command-line tool) indexes without it.
            let known = records.base_known.notified();
            tokio::pin!(known);
            known.as_mut().enable();
            if records.base_url().is_none() {
                let _ = tokio::time::timeout(WAIT_FOR_BASE, known).await;
            }
            match records.reindex().await {
                Ok(Some(n)) => tracing::info!(resources = n, "the search index was rebuilt"),
                Ok(None) => {}
                Err(e) => {
                    if !records.store.is_closed() {
                        tracing::warn!(
                            "cannot rebuild the search index ({e}); it goes on at the next start"
                        );
                    }
                }
            }
        });
        Ok(())
    }

    /// Rebuilds the search index of every resource's current version, from where an earlier
    /// run stopped; `None` when the store closed first (it goes on at the next start).
    pub(crate) async fn reindex(&self) -> Result<Option<u64>> {
        let mut after: i64 = self
            .store
            .setting(PROGRESS_SETTING)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        tracing::info!("rebuilding the search index in the background (searches keep working)");
        let mut total = 0u64;
        loop {
            if self.store.is_closed() {
                return Ok(None);
            }
            let batch = self.store.current_bodies_after(after, BATCH).await?;
            let Some(last) = batch.last().map(|b| b.rid) else {
                break;
            };
            // Each resource's index values and patient, in the batch's order.
            let mut worked: Vec<(Vec<IndexEntry>, Option<String>)> =
                Vec::with_capacity(batch.len());
            for b in &batch {
                let json = self
                    .keys
                    .open(&self.store, &b.res_type, &b.res_id, b.version, &b.body)
                    .await?;
                let value: serde_json::Value = serde_json::from_slice(&json).map_err(|e| {
                    RecordsError::Integrity(format!("a stored resource is not JSON: {e}"))
                })?;
                let mut index = extract(&value);
                localize(&mut index, self.base_url());
                let patient = compartment_patient(&b.res_type, &b.res_id, &index);
                worked.push((index, patient));
            }
            let items: Vec<Reindexed<'_>> = batch
                .iter()
                .zip(&worked)
                .map(|(b, (index, patient))| Reindexed {
                    rid: b.rid,
                    res_type: &b.res_type,
                    version: b.version,
                    index,
                    patient: patient.clone(),
                })
                .collect();
            let items = &items;
            self.retrying(|mut tx| async move {
                let n = tx.reindex(items).await?;
                tx.set_setting(PROGRESS_SETTING, &last.to_string()).await?;
                tx.commit().await?;
                Ok(n)
            })
            .await?;
            total += batch.len() as u64;
            after = last;
        }
        let mut tx = self.store.begin().await?;
        tx.set_setting(VERSION_SETTING, &INDEX_VERSION.to_string())
            .await?;
        tx.set_setting(PROGRESS_SETTING, "0").await?;
        tx.commit().await?;
        Ok(Some(total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::Actor;
    use ironchart_fhir::search::SearchQuery;
    use serde_json::json;

    fn query(rtype: &str, pairs: &[(&str, &str)]) -> SearchQuery {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SearchQuery::parse(rtype, &pairs).unwrap()
    }

    /// A database indexed by an earlier version (here: its string rows gone, a Group placed in
    /// its first member's compartment, the version setting old) is rebuilt: names are found by
    /// any word again, the Group is in no compartment, and the setting is current.
    #[tokio::test]
    async fn an_index_from_an_earlier_version_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let records = crate::service::tests::sqlite_records(dir.path()).await;
        let op = Actor::local_operator();
        records
            .import(
                &op,
                vec![
                    json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "van der Berg"}]}),
                    json!({"resourceType": "Patient", "id": "p2", "name": [{"family": "O'Brien"}]}),
                    json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": true,
                           "member": [{"entity": {"reference": "Patient/p1"}},
                                      {"entity": {"reference": "Patient/p2"}}]}),
                ],
            )
            .await
            .unwrap();
        let found = |q: SearchQuery| {
            let records = records.clone();
            let op = op.clone();
            async move {
                let page = records.search(&op, &q, None).await.unwrap();
                let mut ids: Vec<String> = page
                    .matches
                    .into_iter()
                    .map(|r| r.id.into_string())
                    .collect();
                ids.sort();
                ids
            }
        };
        assert_eq!(found(query("Patient", &[("family", "berg")])).await, ["p1"]);
        // As an earlier version left it.
        {
            use sqlx::Connection;
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.path().join("t.sqlite3"))
                .busy_timeout(std::time::Duration::from_secs(10));
            let mut conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .unwrap();
            sqlx::raw_sql(
                "DELETE FROM idx_string; \
                 UPDATE resources SET patient = 'p1' WHERE res_type = 'Group'; \
                 UPDATE settings SET value = '1' WHERE key = 'index.version';",
            )
            .execute(&mut conn)
            .await
            .unwrap();
            conn.close().await.unwrap();
        }
        assert!(
            found(query("Patient", &[("family", "berg")]))
                .await
                .is_empty()
        );
        assert_eq!(records.reindex().await.unwrap(), Some(3));
        assert_eq!(found(query("Patient", &[("family", "berg")])).await, ["p1"]);
        assert_eq!(
            found(query("Patient", &[("family", "obrien")])).await,
            ["p2"]
        );
        let group = records.store.read("Group", "g1").await.unwrap().unwrap();
        assert_eq!(group.patient, None);
        assert_eq!(
            records
                .store
                .setting(VERSION_SETTING)
                .await
                .unwrap()
                .as_deref(),
            Some(INDEX_VERSION.to_string().as_str())
        );
        records.close().await;
    }

    /// A reindex started as the database opens waits for the server's base URL (set right
    /// after), so that an absolute reference on that base is indexed as the local resource.
    #[tokio::test]
    async fn a_reindex_at_start_waits_for_the_base_url() {
        use ironchart_security::keyring::MasterKey;
        let dir = tempfile::tempdir().unwrap();
        let op = Actor::local_operator();
        let key_file = dir.path().join("master.key");
        let open = |master_key: MasterKey| {
            let security = crate::SecurityConfig {
                master_key,
                checkpoint_file: None,
                journal_dir: dir.path().to_path_buf(),
                sync_reads: false,
            };
            let config = crate::DatabaseConfig::Sqlite(dir.path().join("t.sqlite3"));
            async move { Records::open(&config, security).await.unwrap() }
        };
        let records = open(MasterKey::create(&key_file).unwrap()).await;
        records
            .import(
                &op,
                vec![
                    json!({"resourceType": "Patient", "id": "p1"}),
                    json!({"resourceType": "Observation", "id": "o1", "status": "final",
                           "code": {"text": "x"},
                           "subject": {"reference": "https://emr.example/fhir/Patient/p1"}}),
                ],
            )
            .await
            .unwrap();
        records
            .store
            .set_setting(VERSION_SETTING, "1")
            .await
            .unwrap();
        records.close().await;

        let records = open(MasterKey::load(&key_file).unwrap()).await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        records.set_base_url("https://emr.example/fhir/");
        let mut rebuilt = false;
        for _ in 0..200 {
            let built = records.store.setting(VERSION_SETTING).await.unwrap();
            if built.as_deref() == Some(INDEX_VERSION.to_string().as_str()) {
                rebuilt = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(rebuilt, "the index was not rebuilt");
        let page = records
            .search(
                &op,
                &query("Observation", &[("subject", "Patient/p1")]),
                None,
            )
            .await
            .unwrap();
        let ids: Vec<String> = page
            .matches
            .into_iter()
            .map(|r| r.id.into_string())
            .collect();
        assert_eq!(ids, ["o1"]);
        records.close().await;
    }
}
