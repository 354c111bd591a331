//! Round trips through the writer and the reader, and damaged volumes.

use crate::label::SessionEnd;
use crate::reader::{Event, VolumeReader};
use crate::writer::VolumeWriter;
use crate::{SessionLabel, VolError, VolumeLabel};

const BLOCK: usize = 64 << 10;

fn volume_label() -> VolumeLabel {
    VolumeLabel {
        label_time_us: 1_700_000_000_000_000,
        write_time_us: 1_700_000_000_000_000,
        volume_name: "Vol1".into(),
        prev_volume_name: String::new(),
        pool_name: "Default".into(),
        pool_type: "Backup".into(),
        media_type: "File".into(),
        host_name: "host".into(),
        label_prog: "cairn".into(),
        prog_version: "0.1.0".into(),
        prog_date: String::new(),
    }
}

fn session(end: Option<SessionEnd>) -> SessionLabel {
    SessionLabel {
        job_id: 1,
        write_time_us: 1_700_000_000_000_000,
        pool_name: "Default".into(),
        pool_type: "Backup".into(),
        job_name: "cairn".into(),
        client_name: "host-a".into(),
        job: "host-a.2023-11-14_22.13.20_01".into(),
        fileset_name: "cairn".into(),
        job_type: b'B',
        job_level: b'F',
        fileset_md5: String::new(),
        end,
    }
}

/// A volume: a label, one session with a small record, one of 150,000
/// bytes (three blocks) and one of exactly the room left in a block.
type Records = Vec<(i32, i32, Vec<u8>)>;

fn sample() -> (Vec<u8>, Records) {
    let big: Vec<u8> = (0..150_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let records = vec![(1, 1, b"1 3 /a\0".to_vec()), (1, 2, big), (2, 2, vec![]), (2, 28, vec![9; 64_000])];
    let mut w = VolumeWriter::create(Vec::new(), &volume_label(), BLOCK).unwrap();
    w.begin_session(1, 1_700_000_000, &session(None)).unwrap();
    for (fi, st, data) in &records {
        w.record(*fi, *st, data).unwrap();
    }
    let end = SessionEnd { job_files: 2, job_bytes: 150_000, job_status: b'T', ..Default::default() };
    w.end_session(&session(Some(end))).unwrap();
    (w.finish().unwrap(), records)
}

fn events(bytes: &[u8]) -> Vec<Result<Event, String>> {
    let mut r = VolumeReader::new(bytes);
    let mut out = Vec::new();
    loop {
        match r.next_event() {
            Ok(Some(e)) => out.push(Ok(e)),
            Ok(None) => return out,
            Err(e) => out.push(Err(e.to_string())),
        }
        assert!(out.len() < 1000, "the reader does not end");
    }
}

#[test]
fn a_volume_reads_back_as_written() {
    let (bytes, records) = sample();
    let got = events(&bytes);
    let Ok(Event::Volume(v)) = &got[0] else { panic!("{:?}", got[0]) };
    assert_eq!(*v, volume_label());
    let Ok(Event::SessionStart { session_id: 1, session_time: 1_700_000_000, label }) = &got[1] else {
        panic!("{:?}", got[1])
    };
    assert_eq!(*label, session(None));
    for (i, (fi, st, data)) in records.iter().enumerate() {
        let Ok(Event::Record { session_id: 1, record, .. }) = &got[2 + i] else { panic!("{:?}", got[2 + i]) };
        assert_eq!((record.file_index, record.stream, &record.data), (*fi, *st, data));
    }
    let Ok(Event::SessionEnd { label, .. }) = &got[6] else { panic!("{:?}", got[6]) };
    assert_eq!(label.end.unwrap().job_files, 2);
    assert_eq!(got.len(), 7);
}

#[test]
fn blocks_are_numbered_sealed_and_no_longer_than_asked() {
    let (bytes, _) = sample();
    let mut pos = 0;
    let mut number = 0;
    while pos < bytes.len() {
        let len = u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        assert!((24..=BLOCK).contains(&len), "block {number}: {len}");
        assert_eq!(&bytes[pos + 12..pos + 16], b"BB02");
        assert_eq!(u32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()), number);
        let crc = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap());
        assert_eq!(crc, crc32fast::hash(&bytes[pos + 4..pos + len]));
        pos += len;
        number += 1;
    }
    assert_eq!(pos, bytes.len(), "no bytes after the last block");
    assert!(number >= 5, "the big record spans blocks: {number} blocks");
}

#[test]
fn a_flipped_bit_is_found_in_its_block_and_the_rest_is_read() {
    let (mut bytes, records) = sample();
    let first = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let second = u32::from_be_bytes(bytes[first + 4..first + 8].try_into().unwrap()) as usize;
    // A bit in block 2 (the second piece of the big record).
    bytes[first + second + 100] ^= 0x10;
    let got = events(&bytes);
    let bad: Vec<_> = got.iter().filter_map(|e| e.as_ref().err()).collect();
    assert!(bad.iter().any(|e| e.contains("block 2") && e.contains("checksum")), "{bad:?}");
    // The small first record and the records after the damage are there.
    let fine: Vec<_> = got
        .iter()
        .filter_map(|e| match e {
            Ok(Event::Record { record, .. }) => Some((record.file_index, record.stream)),
            _ => None,
        })
        .collect();
    assert!(
        fine.contains(&(1, 1)) && fine.contains(&(2, 28)),
        "{fine:?} {:?}",
        got.iter().map(|e| e.as_ref().map(|_| ()).map_err(Clone::clone)).collect::<Vec<_>>()
    );
    assert!(!fine.contains(&(1, 2)), "the damaged record is never given out: {fine:?}");
    assert_eq!(records.len(), 4);
}

#[test]
fn a_truncated_volume_says_where_it_ends() {
    let (bytes, _) = sample();
    for cut in [10, 30, bytes.len() / 2, bytes.len() - 1] {
        let got = events(&bytes[..cut]);
        assert!(got.iter().any(Result::is_err), "cut at {cut}: {got:?}");
    }
    assert!(matches!(
        VolumeReader::new(&b"garbage that is not a volume"[..]).next_event(),
        Err(VolError::BadBlock { .. })
    ));
}

#[test]
fn block_sizes_outside_the_limits_are_refused() {
    for size in [0, 1024, (4 << 20) + 1] {
        assert!(VolumeWriter::create(Vec::new(), &volume_label(), size).is_err(), "{size}");
    }
    let long = VolumeLabel { volume_name: "x".repeat(200), ..volume_label() };
    assert!(VolumeWriter::create(Vec::new(), &long, BLOCK).is_err());
}

#[test]
fn a_session_spans_volumes_and_reads_back_whole() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let labels: Rc<RefCell<Vec<String>>> = Rc::default();
    let seen = labels.clone();
    let mut w = VolumeWriter::create(Vec::new(), &volume_label(), BLOCK).unwrap();
    w.span(
        4 * BLOCK as u64,
        Box::new(move |n| {
            let name = format!("Vol1.{n}");
            seen.borrow_mut().push(name.clone());
            Ok(crate::writer::NewVolume {
                out: Vec::new(),
                label: VolumeLabel {
                    volume_name: name.clone(),
                    prev_volume_name: "Vol1".into(),
                    ..volume_label()
                },
                record: Some(format!("media {name}").into_bytes()),
            })
        }),
    )
    .unwrap();
    w.begin_session(1, 7, &session(None)).unwrap();
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    w.record(1, 2, &big).unwrap();
    w.record(2, 2, b"after").unwrap();
    w.end_session(&session(Some(SessionEnd { job_files: 2, ..Default::default() }))).unwrap();
    let outs = w.finish_all().unwrap();
    assert!(outs.len() >= 4, "{} volumes", outs.len());
    assert_eq!(labels.borrow().len(), outs.len() - 1);
    assert!(outs.iter().all(|o| o.len() as u64 <= 4 * BLOCK as u64), "a volume over its limit");

    let mut r = VolumeReader::new(&outs[0][..]);
    let mut records = Vec::new();
    let mut volumes = Vec::new();
    let mut media = Vec::new();
    let mut next = 1;
    loop {
        match r.next_event().unwrap() {
            Some(Event::Record { session_id: 0, record, .. }) => {
                assert_eq!((record.file_index, record.stream), (1, crate::stream::CAIRN));
                media.push(String::from_utf8(record.data).unwrap());
            }
            Some(Event::Record { record, .. }) => records.push(record),
            Some(Event::Volume(v)) => volumes.push(v.volume_name),
            Some(_) => {}
            None if next < outs.len() => {
                r.next_volume(&outs[next][..]);
                next += 1;
            }
            None => break,
        }
    }
    assert_eq!(r.unfinished(), None);
    assert_eq!(volumes[0], "Vol1");
    assert_eq!(volumes[1..], labels.borrow()[..]);
    // The record each next volume's block 0 carries after its label.
    let want: Vec<String> = labels.borrow().iter().map(|n| format!("media {n}")).collect();
    assert_eq!(media, want);
    assert_eq!((records[0].data.len(), &records[1].data[..]), (big.len(), &b"after"[..]));
    assert_eq!(records[0].data, big);
}

/// Blocks of two sessions written at once come interleaved on one volume
/// (each block holds records of one session): the reader joins each
/// session's records, cut across its own blocks, whatever came between.
#[test]
fn interleaved_sessions_read_back_each_whole() {
    let head = VolumeWriter::create(Vec::new(), &volume_label(), BLOCK).unwrap().finish().unwrap();
    let big = |seed: u32| -> Vec<u8> { (0..300_000u32).map(|i| (i.wrapping_mul(seed) >> 7) as u8).collect() };
    let (a, b) = (big(2_654_435_761), big(2_246_822_519));
    let blocks_of = |id: u32, data: &[u8]| -> Vec<Vec<u8>> {
        let mut w = VolumeWriter::append(Vec::new(), 0, BLOCK).unwrap();
        w.begin_session(id, 7, &session(None)).unwrap();
        w.record(1, 2, data).unwrap();
        w.record(2, 2, b"small").unwrap();
        w.end_session(&session(Some(SessionEnd { job_files: 2, ..Default::default() }))).unwrap();
        let out = w.finish().unwrap();
        let mut blocks = Vec::new();
        let mut at = 0;
        while at < out.len() {
            let len = u32::from_be_bytes(out[at + 4..at + 8].try_into().unwrap()) as usize;
            blocks.push(out[at..at + len].to_vec());
            at += len;
        }
        blocks
    };
    let (ba, bb) = (blocks_of(1, &a), blocks_of(2, &b));
    assert!(ba.len() >= 5 && bb.len() >= 5);
    let mut volume = head;
    for i in 0..ba.len().max(bb.len()) {
        for blocks in [&ba, &bb] {
            if let Some(block) = blocks.get(i) {
                volume.extend_from_slice(block);
            }
        }
    }
    let mut r = VolumeReader::new(&volume[..]);
    let mut got: std::collections::BTreeMap<u32, Vec<Vec<u8>>> = Default::default();
    let mut ends = Vec::new();
    while let Some(e) = r.next_event().unwrap() {
        match e {
            Event::Record { session_id, record, .. } => got.entry(session_id).or_default().push(record.data),
            Event::SessionEnd { session_id, .. } => ends.push(session_id),
            _ => {}
        }
    }
    assert_eq!(ends, [1, 2]);
    assert_eq!(got[&1], [a, b"small".to_vec()]);
    assert_eq!(got[&2], [b, b"small".to_vec()]);
    assert_eq!(r.unfinished(), None);

    // A damaged block of one session loses that session's record, not the
    // other's.
    let mut damaged = volume.clone();
    // After the label: a's first block, then b's first block (whole
    // BLOCKs): a bit of b's flips.
    let at = volume_label_len(&volume) + BLOCK + 100;
    damaged[at] ^= 1;
    let mut r = VolumeReader::new(&damaged[..]);
    let mut records = Vec::new();
    let mut errors = 0;
    loop {
        match r.next_event() {
            Ok(Some(Event::Record { session_id, record, .. })) => {
                records.push((session_id, record.data.len()))
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => errors += 1,
        }
    }
    assert!(errors >= 1);
    assert!(records.contains(&(1, 300_000)), "the other session's big record survives: {records:?}");
    assert!(!records.contains(&(2, 300_000)), "the damaged one is not given whole: {records:?}");
    assert!(records.contains(&(2, 5)), "the damaged session goes on after the lost record: {records:?}");
}

fn volume_label_len(volume: &[u8]) -> usize {
    u32::from_be_bytes(volume[4..8].try_into().unwrap()) as usize
}
