use super::*;
use crate::Library;

fn lib(dir: &Path, capacity: u64) -> VirtualLibrary {
    VirtualLibrary::create(
        dir,
        &CreateOptions {
            drives: 2,
            slots: 6,
            import_export: 1,
            capacity,
            cartridges: 4,
            worm: 1,
            cleaning: 1,
            prefix: "TST".into(),
        },
    )
    .unwrap()
}

fn block(n: u8, len: usize) -> Vec<u8> {
    vec![n; len]
}

#[test]
fn a_new_library_lists_its_cartridges_and_opens_from_its_description() {
    let t = tempfile::tempdir().unwrap();
    let l = lib(&t.path().join("lib"), 4 << 20);
    let inv = l.changer().inventory().unwrap();
    assert_eq!(inv.drives.len(), 2);
    assert_eq!(inv.storage.len(), 6);
    assert_eq!(inv.import_export.len(), 1);
    let codes: Vec<_> = inv.storage.iter().map(|e| e.barcode.clone()).collect();
    assert_eq!(
        codes,
        [Some("TST001L9"), Some("TST002L9"), Some("TST003L9"), Some("TST004LZ"), Some("CLN001L1"), None]
            .map(|c| c.map(String::from))
    );
    assert!(l.spec("TST004LZ").unwrap().worm);
    assert!(!l.spec("TST001L9").unwrap().worm);
    let opened = Library::open(l.dir()).unwrap();
    assert_eq!(opened.drives(), 2);
    assert_eq!(opened.changer().unwrap().inventory().unwrap(), inv);
    assert!(
        VirtualLibrary::create(
            l.dir(),
            &CreateOptions {
                drives: 1,
                slots: 1,
                import_export: 0,
                capacity: 1 << 20,
                cartridges: 0,
                worm: 0,
                cleaning: 0,
                prefix: "ABC".into()
            }
        )
        .is_err(),
        "a library is never made over another"
    );
}

#[test]
fn blocks_and_filemarks_read_back_where_they_were_written() {
    let t = tempfile::tempdir().unwrap();
    let l = lib(&t.path().join("lib"), 4 << 20);
    let mut ch = l.changer();
    ch.load("TST001L9", 0).unwrap();
    let mut d = l.drive(0).unwrap();
    assert!(d.status().unwrap().at_bot);
    d.write_block(&block(1, 1000)).unwrap();
    d.write_filemarks(1).unwrap();
    d.write_block(&block(2, 2000)).unwrap();
    d.write_block(&block(3, 3000)).unwrap();
    d.write_filemarks(1).unwrap();
    assert_eq!(d.position().unwrap(), 5);
    let s = d.status().unwrap();
    assert!(s.at_eod && s.loaded && !s.worm);
    assert_eq!(s.file_number, Some(2));

    // The cartridge's data file is the blocks back to back: a volume file.
    let raw = fs::read(l.cartridge_file("TST001L9")).unwrap();
    assert_eq!(raw, [block(1, 1000), block(2, 2000), block(3, 3000)].concat());

    d.rewind().unwrap();
    let mut buf = vec![0; 4096];
    assert_eq!(d.read_block(&mut buf).unwrap(), ReadOutcome::Block(1000));
    assert_eq!(d.read_block(&mut buf).unwrap(), ReadOutcome::Filemark);
    assert_eq!(d.read_block(&mut buf).unwrap(), ReadOutcome::Block(2000));
    assert_eq!(&buf[..2000], &block(2, 2000)[..]);
    d.space_blocks(1).unwrap();
    assert_eq!(d.read_block(&mut buf).unwrap(), ReadOutcome::Filemark);
    assert_eq!(d.read_block(&mut buf).unwrap(), ReadOutcome::EndOfData);
    // Back over one filemark: just before it; forward over one: after it.
    d.space_filemarks(-1).unwrap();
    assert_eq!(d.position().unwrap(), 4);
    d.space_blocks(-1).unwrap();
    assert_eq!(d.read_block(&mut buf).unwrap(), ReadOutcome::Block(3000));
    d.rewind().unwrap();
    d.space_filemarks(1).unwrap();
    assert_eq!(d.position().unwrap(), 2);
    assert!(d.space_filemarks(5).is_err(), "spacing past the end of data fails");
    assert!(d.status().unwrap().at_eod);
    d.locate(2).unwrap();
    assert_eq!(d.read_block(&mut buf).unwrap(), ReadOutcome::Block(2000));
    assert!(d.locate(6).is_err());
    let mut small = vec![0; 10];
    d.locate(0).unwrap();
    assert!(d.read_block(&mut small).is_err(), "a block larger than the buffer is an error");

    // A second user of the drive is refused while this one holds it.
    assert!(matches!(l.drive(0), Err(TapeError::Busy(_))));
}

#[test]
fn writing_in_the_middle_cuts_what_followed() {
    let t = tempfile::tempdir().unwrap();
    let l = lib(&t.path().join("lib"), 4 << 20);
    l.changer().load("TST002L9", 1).unwrap();
    let mut d = l.drive(1).unwrap();
    for i in 0..4 {
        d.write_block(&block(i, 500)).unwrap();
    }
    d.locate(2).unwrap();
    d.write_block(&block(9, 100)).unwrap();
    assert!(d.status().unwrap().at_eod);
    d.rewind().unwrap();
    let mut buf = vec![0; 1000];
    let mut seen = Vec::new();
    while let ReadOutcome::Block(n) = d.read_block(&mut buf).unwrap() {
        seen.push((buf[0], n));
    }
    assert_eq!(seen, [(0, 500), (1, 500), (9, 100)]);
    drop(d);
    // And it stays so when the drive is opened again.
    let mut d = l.drive(1).unwrap();
    d.seek_end_of_data().unwrap();
    assert_eq!(d.position().unwrap(), 3);
    assert_eq!(fs::metadata(l.cartridge_file("TST002L9")).unwrap().len(), 1100);
}

#[test]
fn a_worm_cartridge_takes_writes_only_at_its_end() {
    let t = tempfile::tempdir().unwrap();
    let l = lib(&t.path().join("lib"), 4 << 20);
    l.changer().load("TST004LZ", 0).unwrap();
    let mut d = l.drive(0).unwrap();
    assert!(d.status().unwrap().worm);
    d.write_block(&block(1, 100)).unwrap();
    d.write_filemarks(1).unwrap();
    d.rewind().unwrap();
    assert!(matches!(d.write_block(&block(2, 100)), Err(TapeError::Worm(_))));
    assert!(matches!(d.write_filemarks(1), Err(TapeError::Worm(_))));
    d.seek_end_of_data().unwrap();
    d.write_block(&block(3, 100)).unwrap();
    assert_eq!(fs::read(l.cartridge_file("TST004LZ")).unwrap(), [block(1, 100), block(3, 100)].concat());
}

#[test]
fn a_write_protected_cartridge_is_read_only() {
    let t = tempfile::tempdir().unwrap();
    let l = lib(&t.path().join("lib"), 4 << 20);
    let spec = CartridgeSpec { write_protected: true, ..l.spec("TST001L9").unwrap() };
    l.set_spec("TST001L9", &spec).unwrap();
    l.changer().load("TST001L9", 0).unwrap();
    let mut d = l.drive(0).unwrap();
    assert!(d.status().unwrap().write_protected);
    assert!(matches!(d.write_block(&block(1, 100)), Err(TapeError::WriteProtected(0))));
    assert_eq!(fs::metadata(l.cartridge_file("TST001L9")).unwrap().len(), 0);
}

#[test]
fn early_warning_comes_before_the_end_and_the_end_refuses() {
    let t = tempfile::tempdir().unwrap();
    let l = lib(&t.path().join("lib"), 1 << 20);
    let spec = l.spec("TST001L9").unwrap();
    assert_eq!((spec.capacity, spec.early_warning), (1 << 20, 512 << 10));
    assert_eq!(CartridgeSpec::new(1 << 30).early_warning, 32 << 20);
    assert_eq!(CartridgeSpec::new(64 << 20).early_warning, 4 << 20);
    l.changer().load("TST001L9", 0).unwrap();
    let mut d = l.drive(0).unwrap();
    let b = block(7, 64 << 10);
    let mut warned_at = None;
    for i in 0..16 {
        match d.write_block(&b).unwrap() {
            WriteOutcome::Written => assert!(warned_at.is_none(), "no plain write after the warning"),
            WriteOutcome::EarlyWarning => {
                warned_at.get_or_insert(i);
            }
        }
    }
    assert_eq!(warned_at, Some(7), "8 blocks reach the warning zone of the last 512 KiB");
    assert!(d.status().unwrap().at_eom);
    assert!(matches!(d.write_block(&b), Err(TapeError::EndOfMedium(0))));
    d.write_filemarks(2).unwrap();
    assert_eq!(fs::metadata(l.cartridge_file("TST001L9")).unwrap().len(), 1 << 20);
}

#[test]
fn a_cartridge_leaves_a_drive_only_after_the_drive_ejected_it() {
    let t = tempfile::tempdir().unwrap();
    let l = lib(&t.path().join("lib"), 4 << 20);
    let mut ch = l.changer();
    ch.load("TST003L9", 0).unwrap();
    let inv = ch.inventory().unwrap();
    assert_eq!(inv.drives[0].barcode.as_deref(), Some("TST003L9"));
    assert_eq!(inv.drives[0].source, Some(FIRST_SLOT + 2));
    assert!(!inv.storage[2].full);
    assert!(matches!(ch.unload(0), Err(TapeError::Busy(_))));
    assert!(matches!(ch.load("TST003L9", 1), Err(TapeError::Busy(_))), "one cartridge, one drive");
    let mut d = l.drive(0).unwrap();
    d.write_block(&block(1, 10)).unwrap();
    d.eject().unwrap();
    assert!(matches!(d.write_block(&block(1, 10)), Err(TapeError::NoMedium(0))));
    assert_eq!(ch.unload(0).unwrap().as_deref(), Some("TST003L9"));
    let inv = ch.inventory().unwrap();
    assert_eq!(inv.storage[2].barcode.as_deref(), Some("TST003L9"), "back to the slot it came from");
    assert!(!inv.drives[0].full);
    assert_eq!(ch.unload(0).unwrap(), None, "an empty drive unloads to nothing");
    // The same drive handle sees the next cartridge loaded into it.
    ch.load("TST001L9", 0).unwrap();
    assert!(d.status().unwrap().loaded);
    assert!(ch.move_medium(FIRST_SLOT + 5, FIRST_SLOT + 4).is_err(), "an empty source");
    assert!(ch.move_medium(FIRST_SLOT + 1, FIRST_SLOT + 2).is_err(), "a full destination");
    assert!(ch.move_medium(FIRST_SLOT + 1, 9999).is_err(), "no such element");
}

#[test]
fn cartridges_come_in_and_go_out_through_the_mail_slot() {
    let t = tempfile::tempdir().unwrap();
    let l = lib(&t.path().join("lib"), 4 << 20);
    let a = l.insert("NEW001L9", &CartridgeSpec::new(2 << 20)).unwrap();
    assert!(l.insert("NEW002L9", &CartridgeSpec::new(2 << 20)).is_err(), "one mail slot");
    let mut ch = l.changer();
    ch.move_medium(a, FIRST_SLOT + 5).unwrap();
    assert_eq!(ch.export("TST001L9").unwrap(), a);
    assert_eq!(l.take_out(a).unwrap(), "TST001L9");
    assert!(ch.inventory().unwrap().find("TST001L9").is_none());
    assert!(l.insert("bad code!", &CartridgeSpec::new(2 << 20)).is_err());
}

#[test]
fn a_cleaning_cartridge_holds_no_data_and_cleans_the_drive() {
    let t = tempfile::tempdir().unwrap();
    let l = lib(&t.path().join("lib"), 4 << 20);
    l.set_needs_cleaning(1, true).unwrap();
    let mut d = l.drive(1).unwrap();
    assert!(d.status().unwrap().cleaning_needed);
    let mut ch = l.changer();
    ch.load("CLN001L1", 1).unwrap();
    assert!(d.write_block(&block(1, 10)).is_err());
    assert!(!d.status().is_ok_and(|s| s.cleaning_needed));
}

#[test]
fn what_a_crash_left_half_written_is_gone_on_the_next_mount() {
    let t = tempfile::tempdir().unwrap();
    let l = lib(&t.path().join("lib"), 4 << 20);
    l.changer().load("TST001L9", 0).unwrap();
    {
        let mut d = l.drive(0).unwrap();
        d.write_block(&block(1, 100)).unwrap();
        d.write_block(&block(2, 100)).unwrap();
    }
    let data = l.cartridge_file("TST001L9");
    // A block whose data never reached the file, and data no index names.
    fs::write(&data, [block(1, 100), block(2, 50)].concat()).unwrap();
    let mut d = l.drive(0).unwrap();
    d.seek_end_of_data().unwrap();
    assert_eq!(d.position().unwrap(), 1);
    assert_eq!(fs::metadata(&data).unwrap().len(), 100);
    assert_eq!(fs::metadata(data.with_extension("index")).unwrap().len(), 4);
}
