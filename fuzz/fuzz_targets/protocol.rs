//! Fuzz the remote protocol's messages as a server or client reads them
//! (`protocol`): no panics; what parses serializes back to the same JSON;
//! chunking settings a server sends are either refused or usable; an
//! index name that passes the check is a plain file name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::{
    BackupSession, BackupStart, Finished, ReaderSession, ReaderStart, SourceHandlerInfo, StoreSettings,
    index_name_ok,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T: Serialize + DeserializeOwned>(data: &[u8]) -> Option<T> {
    let m: T = serde_json::from_slice(data).ok()?;
    let once = serde_json::to_value(&m).unwrap();
    let again: T = serde_json::from_value(once.clone()).unwrap();
    assert_eq!(serde_json::to_value(&again).unwrap(), once);
    Some(m)
}

fuzz_target!(|data: &[u8]| {
    if let Some(start) = round_trip::<BackupStart>(data) {
        let _ = model::BackupGroup::parse(&start.group, &model::Namespace::root());
    }
    if let Some(settings) = round_trip::<StoreSettings>(data)
        && let Ok(config) = settings.config()
    {
        let c = config.cdc;
        assert!(c.min > 0 && c.min <= c.avg && c.avg <= c.max, "{c:?}");
        assert!((1..=19).contains(&config.zstd_level));
    }
    round_trip::<ReaderStart>(data);
    round_trip::<BackupSession>(data);
    round_trip::<ReaderSession>(data);
    round_trip::<Finished>(data);
    round_trip::<SourceHandlerInfo>(data);
    if let Ok(name) = std::str::from_utf8(data)
        && index_name_ok(name)
    {
        assert!(!name.contains(['/', '\0']) && name != "." && name != "..");
        assert!(name.ends_with(".didx") || name.ends_with(".fidx"));
    }
});
