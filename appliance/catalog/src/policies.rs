//! Stored policies: a record per name and the component bytes per digest,
//! server records like jobs, never touched by a rebuild. Several names may
//! share one component; it goes when the last of them does.

use model::PolicyRecord;
use redb::{ReadableDatabase, ReadableTable, TableError};

use crate::row::PolicyRowV1;
use crate::schema::{POLICIES, POLICY_COMPONENTS};
use crate::{Catalog, CatalogError, corrupt};

/// A policy `remove_policy` took away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedPolicy {
    pub record: PolicyRecord,
    /// Whether its component went too (no other name used it).
    pub component_removed: bool,
}

impl Catalog {
    /// Store `component` under `record.name`, replacing a policy of that
    /// name, in one transaction. The caller has checked that
    /// `record.digest` is the component's digest. A component the old
    /// record named and no other name uses is dropped.
    pub fn put_policy(&self, record: &PolicyRecord, component: &[u8]) -> Result<(), CatalogError> {
        let row = serde_json::to_vec(&PolicyRowV1::from(record))
            .map_err(|e| corrupt(&record.name, e.to_string()))?;
        let write = self.db.begin_write()?;
        {
            let mut policies = write.open_table(POLICIES)?;
            let mut components = write.open_table(POLICY_COMPONENTS)?;
            let old = policies.insert(record.name.as_str(), row.as_slice())?.map(|v| v.value().to_vec());
            if components.get(record.digest.as_str())?.is_none() {
                components.insert(record.digest.as_str(), component)?;
            }
            if let Some(old) = old {
                let old = decode(&record.name, &old)?;
                if old.digest != record.digest && !names_digest(&policies, &old.digest)? {
                    components.remove(old.digest.as_str())?;
                }
            }
        }
        write.commit()?;
        Ok(())
    }

    /// Every stored policy, by name.
    pub fn list_policies(&self) -> Result<Vec<PolicyRecord>, CatalogError> {
        self.list::<PolicyRowV1, _>(POLICIES)
    }

    /// The record of policy `name`, without its component.
    pub fn get_policy(&self, name: &str) -> Result<Option<PolicyRecord>, CatalogError> {
        self.get::<PolicyRowV1, _>(POLICIES, name)
    }

    /// The record of policy `name` and its component's bytes, read in one
    /// transaction.
    pub fn load_policy(&self, name: &str) -> Result<Option<(PolicyRecord, Vec<u8>)>, CatalogError> {
        let read = self.db.begin_read()?;
        let policies = match read.open_table(POLICIES) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(row) = policies.get(name)? else { return Ok(None) };
        let record = decode(name, row.value())?;
        let components = read.open_table(POLICY_COMPONENTS)?;
        let bytes = components
            .get(record.digest.as_str())?
            .ok_or_else(|| corrupt(name, format!("its component {} is missing", record.digest)))?
            .value()
            .to_vec();
        Ok(Some((record, bytes)))
    }

    /// Remove policy `name`, and its component unless another name uses it.
    pub fn remove_policy(&self, name: &str) -> Result<Option<RemovedPolicy>, CatalogError> {
        let write = self.db.begin_write()?;
        let removed = {
            let mut policies = write.open_table(POLICIES)?;
            let Some(old) = policies.remove(name)?.map(|v| v.value().to_vec()) else { return Ok(None) };
            let record = decode(name, &old)?;
            let component_removed = !names_digest(&policies, &record.digest)?;
            if component_removed {
                write.open_table(POLICY_COMPONENTS)?.remove(record.digest.as_str())?;
            }
            RemovedPolicy { record, component_removed }
        };
        write.commit()?;
        Ok(Some(removed))
    }
}

fn decode(key: &str, bytes: &[u8]) -> Result<PolicyRecord, CatalogError> {
    let row: PolicyRowV1 = serde_json::from_slice(bytes).map_err(|e| corrupt(key, e.to_string()))?;
    row.try_into().map_err(|e| corrupt(key, e))
}

/// Whether any policy in `policies` names component `digest`.
fn names_digest(
    policies: &impl ReadableTable<&'static str, &'static [u8]>,
    digest: &str,
) -> Result<bool, CatalogError> {
    for entry in policies.iter()? {
        let (key, value) = entry?;
        if decode(key.value(), value.value())?.digest == digest {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, component: &[u8]) -> PolicyRecord {
        PolicyRecord {
            name: name.into(),
            world: "retention".into(),
            wit_version: "0.1.0".into(),
            policy_name: "retention-gfs".into(),
            policy_version: "0.1.0".into(),
            description: "keeps".into(),
            params: vec![("keep-last".into(), "the newest N".into())],
            digest: format!("{:0>64}", component.len()),
            size: component.len() as u64,
            added: 1_795_316_400,
            cpu_ms: 1_000,
            memory_mib: 64,
        }
    }

    fn components(cat: &Catalog) -> usize {
        let read = cat.db.begin_read().expect("read");
        read.open_table(POLICY_COMPONENTS).expect("table").iter().expect("iter").count()
    }

    #[test]
    fn records_share_components_and_the_last_name_takes_its_component() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cat = Catalog::open(&dir.path().join("catalog.redb")).expect("open");
        assert_eq!(cat.list_policies().expect("list"), vec![]);
        assert_eq!(cat.load_policy("gfs").expect("load"), None);
        let (one, two) = (b"first component".as_slice(), b"second, longer component".as_slice());
        let (a, b) = (record("a", one), record("b", one));
        cat.put_policy(&a, one).expect("put a");
        cat.put_policy(&b, one).expect("put b");
        assert_eq!(components(&cat), 1);
        assert_eq!(cat.list_policies().expect("list"), vec![a.clone(), b.clone()]);
        assert_eq!(cat.load_policy("a").expect("load"), Some((a.clone(), one.to_vec())));
        assert_eq!(cat.get_policy("b").expect("get"), Some(b.clone()));

        // b moves to another component: the first stays (a uses it).
        let b2 = record("b", two);
        cat.put_policy(&b2, two).expect("replace b");
        assert_eq!(components(&cat), 2);
        assert_eq!(cat.load_policy("b").expect("load"), Some((b2.clone(), two.to_vec())));
        // a moves too: the first component has no name left and goes.
        cat.put_policy(&record("a", two), two).expect("replace a");
        assert_eq!(components(&cat), 1);

        let gone = cat.remove_policy("a").expect("rm a").expect("existed");
        assert!(!gone.component_removed, "b still names it");
        let gone = cat.remove_policy("b").expect("rm b").expect("existed");
        assert!(gone.component_removed);
        assert_eq!(gone.record, b2);
        assert_eq!(components(&cat), 0);
        assert_eq!(cat.remove_policy("b").expect("rm again"), None);
    }
}
