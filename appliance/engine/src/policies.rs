//! Stored policies: records and components in the catalog, compiled
//! artifacts cached in the datastore. Validating a component is the policy
//! host's job; this module keeps what it accepted and checks that what it
//! hands back is what was stored.

use anyhow::{Context, Result, bail, ensure};
use model::PolicyRecord;
use model::policy::{NAME_RULE, valid_name};

use crate::Engine;

fn check_name(name: &str) -> Result<()> {
    ensure!(valid_name(name), "{name:?}: {NAME_RULE}");
    Ok(())
}

impl Engine {
    /// Store `component` under `record.name`, replacing a policy of that
    /// name.
    pub fn save_policy(&self, record: &PolicyRecord, component: &[u8]) -> Result<()> {
        check_name(&record.name)?;
        ensure!(
            blake3::hash(component).to_hex().as_str() == record.digest,
            "policy {}: the record's digest is not the component's",
            record.name
        );
        self.catalog()?.put_policy(record, component)?;
        Ok(())
    }

    /// Every stored policy, by name.
    pub fn list_policies(&self) -> Result<Vec<PolicyRecord>> {
        Ok(self.catalog()?.list_policies()?)
    }

    /// The record of policy `name`; `None` if unknown.
    pub fn policy(&self, name: &str) -> Result<Option<PolicyRecord>> {
        check_name(name)?;
        Ok(self.catalog()?.get_policy(name)?)
    }

    /// The record and component bytes of policy `name`; `None` if unknown.
    /// The bytes are checked against the record's digest.
    pub fn load_policy(&self, name: &str) -> Result<Option<(PolicyRecord, Vec<u8>)>> {
        check_name(name)?;
        let Some((record, component)) = self.catalog()?.load_policy(name)? else { return Ok(None) };
        if blake3::hash(&component).to_hex().as_str() != record.digest {
            bail!("policy {name}: the stored component does not match its digest; add the policy again");
        }
        Ok(Some((record, component)))
    }

    /// Remove policy `name`; its component and the component's compiled
    /// artifacts go too unless another name uses it. Returns whether it
    /// existed.
    pub fn remove_policy(&self, name: &str) -> Result<bool> {
        check_name(name)?;
        let Some(removed) = self.catalog()?.remove_policy(name)? else { return Ok(false) };
        if removed.component_removed {
            self.ds.remove_policy_artifacts(&removed.record.digest)?;
        }
        Ok(true)
    }

    /// Move policies an older build kept as files in the datastore into
    /// the catalog (a name already in the catalog keeps its entry there).
    /// A file that cannot be read or moved stays where it is, with a
    /// warning: it must not keep the datastore from opening.
    pub(crate) fn import_legacy_policies(&self) {
        if let Err(e) = self.try_import_legacy_policies() {
            tracing::warn!(
                "policies kept in the datastore's policies/ were not moved into the catalog: {e:#}"
            );
        }
    }

    fn try_import_legacy_policies(&self) -> Result<()> {
        let legacy = self.ds.legacy_policies().context("reading the policies kept in the datastore")?;
        if legacy.is_empty() {
            return Ok(());
        }
        let catalog = self.catalog()?;
        for (record, component) in &legacy {
            if catalog.get_policy(&record.name)?.is_none() {
                catalog.put_policy(record, component)?;
                tracing::info!("policy {} moved from the datastore into the catalog", record.name);
            }
        }
        let records: Vec<PolicyRecord> = legacy.into_iter().map(|(r, _)| r).collect();
        self.ds.remove_legacy_policies(&records)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use filevol::DatastoreConfig;

    use super::*;

    fn record(name: &str, component: &[u8]) -> PolicyRecord {
        PolicyRecord {
            name: name.into(),
            world: "retention".into(),
            wit_version: "0.1.0".into(),
            policy_name: "p".into(),
            policy_version: "1".into(),
            description: String::new(),
            params: vec![],
            digest: blake3::hash(component).to_hex().to_string(),
            size: component.len() as u64,
            added: 0,
            cpu_ms: 1_000,
            memory_mib: 64,
        }
    }

    #[test]
    fn policies_live_in_the_catalog_and_take_their_artifacts_along() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (engine, _) = Engine::init(&dir.path().join("ds"), DatastoreConfig::default()).expect("init");
        let component = b"component bytes";
        let gfs = record("gfs", component);
        assert!(engine.save_policy(&record("../x", component), component).is_err());
        assert!(engine.save_policy(&gfs, b"other bytes").is_err(), "digest mismatch");
        engine.save_policy(&gfs, component).expect("save");
        engine.datastore().save_policy_artifact(&gfs.digest, "0123456789abcdef", b"compiled").expect("cache");
        assert_eq!(engine.load_policy("gfs").expect("load"), Some((gfs.clone(), component.to_vec())));
        assert_eq!(engine.policy("gfs").expect("get"), Some(gfs.clone()));
        assert_eq!(engine.list_policies().expect("list"), vec![gfs.clone()]);
        assert!(engine.load_policy("a/b").is_err());
        assert!(engine.remove_policy("gfs").expect("rm"));
        assert!(!engine.remove_policy("gfs").expect("rm again"));
        assert_eq!(
            engine.datastore().load_policy_artifact(&gfs.digest, "0123456789abcdef").expect("load"),
            None
        );
    }

    #[test]
    fn policies_an_older_build_kept_as_files_move_into_the_catalog() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("ds");
        let (engine, _) = Engine::init(&root, DatastoreConfig::default()).expect("init");
        let component = b"component bytes";
        let gfs = record("gfs", component);
        let policies = root.join("policies");
        std::fs::create_dir_all(&policies).expect("mkdir");
        std::fs::write(policies.join(format!("{}.wasm", gfs.digest)), component).expect("blob");
        let json = format!(
            r#"{{"name":"gfs","world":"retention","wit_version":"0.1.0","policy_name":"p","policy_version":"1",
            "description":"","params":[],"digest":"{}","size":15,"added":0,"cpu_ms":1000,"memory_mib":64}}"#,
            gfs.digest
        );
        std::fs::write(policies.join("gfs.json"), json).expect("record");
        std::fs::write(policies.join("broken.json"), "{").expect("damaged record");
        drop(engine);
        // A damaged record is left alone and does not keep the datastore
        // from opening.
        let engine = Engine::open(&root).expect("open");
        assert_eq!(engine.load_policy("gfs").expect("load"), None);
        std::fs::remove_file(policies.join("broken.json")).expect("rm");
        drop(engine);
        let engine = Engine::open(&root).expect("open");
        assert_eq!(engine.load_policy("gfs").expect("load"), Some((gfs, component.to_vec())));
        assert_eq!(std::fs::read_dir(&policies).expect("dir").count(), 0, "the files are gone");
    }
}
