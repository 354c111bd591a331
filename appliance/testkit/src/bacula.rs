//! Bacula's own tools as an oracle for Cairn's volumes: `bls` lists the
//! sessions and files of a volume, `bextract` restores it, both from
//! Debian's `bacula-sd` (9.6). Tests that use them are gated by
//! [`Need::Bacula`](crate::Need::Bacula).
//!
//! ```ignore
//! let bacula = Bacula::new(&volumes, 256 * 1024);
//! let sessions = bacula.sessions("vol-0001").unwrap();
//! bacula.extract("vol-0001", &target).unwrap();
//! ```
//!
//! [`Bacula::new`] writes the smallest configuration the tools accept: a
//! Storage resource (name, working and pid directory) and one file Device
//! whose Archive Device is the volume directory. The tools run with stdin
//! closed (on a wrong volume name they would otherwise ask to mount one),
//! and their whole output, stdout and stderr interleaved as printed, comes
//! back in every error.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// The largest `Maximum Block Size` Bacula 9.6 takes: a larger value is a
/// configuration error. Values that are not a multiple of 1024 are taken
/// with a warning, which [`Bacula::sessions`] reports as an error.
pub const MAX_BLOCK_SIZE: u32 = 20_000_000;

/// Where the tools live besides `PATH`: Debian installs them in `/usr/sbin`.
const SBIN: [&str; 2] = ["/usr/sbin", "/sbin"];

/// Names the private directories of the [`Bacula`]s of this process.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A configuration for `bls` and `bextract` reading the volumes in one
/// directory. Its private directory (configuration, working directory,
/// captured output) is removed on drop.
pub struct Bacula {
    volume_dir: PathBuf,
    private: PathBuf,
    conf: PathBuf,
}

/// One job session of a volume as `bls -j` prints it: the start of session
/// label gives the job, the end of session label the counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// VolSessionId and VolSessionTime: what names the session on a volume
    /// (a bootstrap file selects a session by them).
    pub session_id: u32,
    pub session_time: u32,
    /// JobId of both session labels.
    pub job_id: u32,
    /// The unique job name (`Job=`).
    pub job: String,
    /// JobFiles of the end of session label.
    pub files: u64,
    /// JobBytes of the end of session label.
    pub bytes: u64,
    /// JobErrors of the end of session label.
    pub errors: u64,
    /// JobStatus of the end of session label (`T`: terminated normally).
    pub status: char,
}

impl Bacula {
    /// Writes a configuration whose one Device reads the volumes in
    /// `volume_dir` with blocks of up to `max_block_size` bytes (Bacula's
    /// own default, without this setting, is 64,512: larger blocks are
    /// read after an error message). Its private directory is made next
    /// to `volume_dir`. Panics if `max_block_size` is over
    /// [`MAX_BLOCK_SIZE`] or a file cannot be written.
    pub fn new(volume_dir: &Path, max_block_size: u32) -> Bacula {
        assert!(
            max_block_size <= MAX_BLOCK_SIZE,
            "Bacula refuses a Maximum Block Size over {MAX_BLOCK_SIZE}, not {max_block_size}"
        );
        // The tools read a relative configuration path from /etc/bacula.
        let volume_dir = std::path::absolute(volume_dir)
            .unwrap_or_else(|e| panic!("absolute path of {}: {e}", volume_dir.display()));
        let parent = volume_dir.parent().unwrap_or(Path::new("/"));
        let base = volume_dir.file_name().map_or("volumes".into(), |n| n.to_string_lossy());
        let private = parent.join(format!(
            ".bacula-{base}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let work = private.join("work");
        fs::create_dir_all(&work).unwrap_or_else(|e| panic!("mkdir {}: {e}", work.display()));
        let conf = private.join("bacula-sd.conf");
        let text = format!(
            "Storage {{\n  Name = cairn-test-sd\n  WorkingDirectory = {work}\n  Pid Directory = {work}\n}}\n\
             Device {{\n  Name = cairn-test-device\n  Media Type = File\n  Device Type = File\n  \
             Archive Device = {dir}\n  Maximum Block Size = {max_block_size}\n}}\n",
            work = quote(&work),
            dir = quote(&volume_dir),
        );
        fs::write(&conf, text).unwrap_or_else(|e| panic!("write {}: {e}", conf.display()));
        Bacula { volume_dir, private, conf }
    }

    /// The configuration file, for running the tools with other options.
    pub fn config(&self) -> &Path {
        &self.conf
    }

    /// The sessions of `volume` (several volumes joined with `|`, as the
    /// tools take them), in the order their start labels appear, from
    /// `bls -E -j` (`-E` checks each label's JobId, JobLevel, JobType and
    /// Job name). An error when the tool fails, prints an error or warning
    /// (it exits 0 after a checksum mismatch or a bad Job name), or a
    /// session lacks its start or end label.
    pub fn sessions(&self, volume: &str) -> Result<Vec<Session>, String> {
        let out = self.bls(&["-E", "-j"], volume)?;
        parse_sessions(&out).map_err(|e| format!("{e}; bls -j printed:\n{out}"))
    }

    /// The paths `bls -v` lists for `volume` (several joined with `|`), in
    /// volume order; a symlink's path without its ` -> target`. An error
    /// when the tool fails, prints an error or warning, or the count it
    /// prints is not the number of paths listed.
    ///
    /// With `-v`, because `bls` 9.6 without it reads a session label whose
    /// JobId is 1 or 5 modulo 2048 (its Stream field, then taken for
    /// STREAM_UNIX_ATTRIBUTES or _EX) as a file's attributes and lists a
    /// file named `immortal` (from the label's Id) for it.
    pub fn files(&self, volume: &str) -> Result<Vec<String>, String> {
        let out = self.bls(&["-v"], volume)?;
        parse_files(&out).map_err(|e| format!("{e}; bls printed:\n{out}"))
    }

    /// Restores `volume` (several joined with `|`) into `target` (made if
    /// missing) with `bextract` and returns what it printed. An error when
    /// it exits non-zero or prints an error or warning (it exits 0 after a
    /// checksum mismatch or a short block), except `Unknown stream=N
    /// ignored`, which it prints for the ACL and xattr streams (1007, 1008,
    /// 1998) it does not restore: those lines stay in the output, for the
    /// caller to check.
    pub fn extract(&self, volume: &str, target: &Path) -> Result<String, String> {
        self.bextract(&["-V".as_ref(), volume.as_ref()], target)
    }

    /// Runs `bextract` with `select` (`-V VOLUME` or `-b BSR`) into
    /// `target` (made if missing): its output, or an error when it failed
    /// or complained.
    fn bextract(&self, select: &[&OsStr], target: &Path) -> Result<String, String> {
        fs::create_dir_all(target).map_err(|e| format!("mkdir {}: {e}", target.display()))?;
        let target = std::path::absolute(target).map_err(|e| format!("{}: {e}", target.display()))?;
        let mut args: Vec<&OsStr> = vec!["-c".as_ref(), self.conf.as_os_str()];
        args.extend(select);
        args.extend([self.volume_dir.as_os_str(), target.as_os_str()]);
        let (ok, out) = self.run("bextract", &args)?;
        if !ok {
            return Err(out);
        }
        match complaint(&out, true) {
            Some(line) => Err(format!("bextract complained ({line}); it printed:\n{out}")),
            None => Ok(out),
        }
    }

    /// Restores one session of `volumes` (names joined with `|`, in order)
    /// into `target` with `bextract -b`, a bootstrap file selecting the
    /// session by its VolSessionId and VolSessionTime: the way Bacula
    /// restores one job from a volume where jobs were written at once.
    /// Errors as `extract`.
    pub fn extract_session(&self, volumes: &str, session: &Session, target: &Path) -> Result<String, String> {
        let bsr = self.private.join(format!("session-{}.bsr", session.session_id));
        let text = format!(
            "Volume=\"{volumes}\"\nVolSessionId={}\nVolSessionTime={}\n",
            session.session_id, session.session_time
        );
        fs::write(&bsr, text).map_err(|e| format!("write {}: {e}", bsr.display()))?;
        self.bextract(&["-b".as_ref(), bsr.as_os_str()], target)
    }

    /// Runs `bls` with `options` on `volume`: its output, or an error when
    /// it failed or complained.
    fn bls(&self, options: &[&str], volume: &str) -> Result<String, String> {
        let mut args: Vec<&OsStr> = vec!["-c".as_ref(), self.conf.as_os_str()];
        args.extend(options.iter().map(OsStr::new));
        args.extend(["-V".as_ref(), volume.as_ref(), self.volume_dir.as_os_str()]);
        let (ok, out) = self.run("bls", &args)?;
        if !ok {
            return Err(out);
        }
        match complaint(&out, false) {
            Some(line) => Err(format!("bls complained ({line}); it printed:\n{out}")),
            None => Ok(out),
        }
    }

    /// Runs `tool` with `args` and stdin closed: whether it exited 0, and
    /// stdout and stderr as one text in the order printed (both go to one
    /// file). The error line names the command.
    fn run(&self, tool: &str, args: &[&OsStr]) -> Result<(bool, String), String> {
        let exe = find_tool(tool)?;
        let log_path = self.private.join(format!("{tool}-{}.out", NEXT.fetch_add(1, Ordering::Relaxed)));
        let log = File::create(&log_path).map_err(|e| format!("create {}: {e}", log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| format!("{}: {e}", log_path.display()))?;
        let line = std::iter::once(exe.as_os_str())
            .chain(args.iter().copied())
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        let status = Command::new(&exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .status()
            .map_err(|e| format!("{line}: {e}"))?;
        let out = fs::read(&log_path).map_err(|e| format!("read {}: {e}", log_path.display()))?;
        let _ = fs::remove_file(&log_path);
        let out = String::from_utf8_lossy(&out).into_owned();
        if status.success() { Ok((true, out)) } else { Ok((false, format!("{line}: {status}\n{out}"))) }
    }
}

impl Drop for Bacula {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.private);
    }
}

/// A path as a quoted string of Bacula's configuration language.
fn quote(path: &Path) -> String {
    let text = path.to_str().unwrap_or_else(|| panic!("{} is not UTF-8", path.display()));
    assert!(!text.contains('\n'), "{text:?}: a Bacula configuration cannot name it");
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `tool` on `PATH`, else in `/usr/sbin` or `/sbin`.
fn find_tool(tool: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN.iter().map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
        .ok_or_else(|| format!("{tool} is not on PATH, in /usr/sbin or /sbin (Debian's bacula-sd has it)"))
}

/// The first message the tools print as an error or warning (`… bls JobId
/// 0: Error: …`, or `***** ERROR ****** : …` from `bls -E`), if any; with `unknown_streams`, not `Error: Unknown
/// stream=N ignored. …`. Listing lines (`bls JobId 0: -rw-r--r-- …`) never
/// match, whatever their file names hold.
fn complaint(out: &str, unknown_streams: bool) -> Option<&str> {
    out.lines().find(|line| {
        if line.starts_with("***** ERROR") {
            return true;
        }
        let Some(at) = line.find(" JobId ") else { return false };
        let rest = &line[at + " JobId ".len()..];
        let Some((id, msg)) = rest.split_once(": ") else { return false };
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
            && ["Error:", "Fatal error:", "Warning:"].iter().any(|p| msg.starts_with(p))
            && !(unknown_streams && msg.starts_with("Error: Unknown stream="))
    })
}

/// The value of `key=` in `line`: up to the next space, or up to `until`
/// when given (for values that may hold spaces).
fn value<'a>(line: &'a str, key: &str, until: Option<&str>) -> Result<&'a str, String> {
    let pat = format!("{key}=");
    let start = line
        .match_indices(&pat)
        .find(|&(at, _)| at == 0 || line.as_bytes()[at - 1] == b' ')
        .map(|(at, _)| at + pat.len())
        .ok_or_else(|| format!("no {key}= in {line:?}"))?;
    let rest = &line[start..];
    let end = match until {
        Some(stop) => rest.find(stop).ok_or_else(|| format!("no {stop:?} after {key}= in {line:?}"))?,
        None => rest.find(' ').unwrap_or(rest.len()),
    };
    Ok(&rest[..end])
}

/// A number as Bacula prints it (`273,784`).
fn number(line: &str, key: &str) -> Result<u64, String> {
    let text = value(line, key, None)?;
    text.replace(',', "").parse().map_err(|_| format!("{key}={text} is not a number in {line:?}"))
}

/// Sessions from `bls -j`'s output: each start label is two lines
///
/// ```text
/// Begin Job Session Record: File:blk=0:0 SessId=1 SessTime=1796424681 JobId=42
///    Job=cairn-job.2025-01-01_00.00.00_01 Date=04-Dec-2026 22:53:01 Level=F Type=B
/// ```
///
/// and each end label too (`End Job Session Record: …` then `Date=… Files=9
/// Bytes=273,784 Errors=0 Status=T`); a session's labels share SessId and
/// SessTime (they may lie in different volumes).
fn parse_sessions(out: &str) -> Result<Vec<Session>, String> {
    let mut sessions: Vec<((u64, u64), Session, bool)> = Vec::new();
    let mut lines = out.lines();
    while let Some(line) = lines.next() {
        let begin = line.starts_with("Begin Job Session Record:");
        if !begin && !line.starts_with("End Job Session Record:") {
            continue;
        }
        let key = (number(line, "SessId")?, number(line, "SessTime")?);
        let job_id = number(line, "JobId")?;
        let job_id = u32::try_from(job_id).map_err(|_| format!("JobId={job_id} in {line:?}"))?;
        let next = lines.next().ok_or_else(|| format!("nothing after {line:?}"))?;
        if begin {
            if sessions.iter().any(|(k, _, _)| *k == key) {
                return Err(format!("a second start label for SessId={} SessTime={}", key.0, key.1));
            }
            let job = value(next, "Job", Some(" Date="))?.to_string();
            let (session_id, session_time) = (
                u32::try_from(key.0).map_err(|_| format!("SessId in {line:?}"))?,
                u32::try_from(key.1).map_err(|_| format!("SessTime in {line:?}"))?,
            );
            let session =
                Session { session_id, session_time, job_id, job, files: 0, bytes: 0, errors: 0, status: '?' };
            sessions.push((key, session, false));
            continue;
        }
        let (_, session, ended) = sessions
            .iter_mut()
            .find(|(k, _, _)| *k == key)
            .ok_or_else(|| format!("an end label without a start label: {line:?}"))?;
        if *ended {
            return Err(format!("a second end label: {line:?}"));
        }
        if session.job_id != job_id {
            return Err(format!("JobId {} at the start, {job_id} at the end: {line:?}", session.job_id));
        }
        session.files = number(next, "Files")?;
        session.bytes = number(next, "Bytes")?;
        session.errors = number(next, "Errors")?;
        let status = value(next, "Status", None)?;
        let mut chars = status.chars();
        session.status = match (chars.next(), chars.next()) {
            (Some(c), None) => c,
            _ => return Err(format!("Status={status} in {next:?}")),
        };
        *ended = true;
    }
    if let Some((key, _, _)) = sessions.iter().find(|(_, _, ended)| !ended) {
        return Err(format!("no end label for SessId={} SessTime={}", key.0, key.1));
    }
    Ok(sessions.into_iter().map(|(_, s, _)| s).collect())
}

/// Paths from `bls -v`'s listing: lines `bls JobId 0: MODE NLINK USER GROUP
/// SIZE DATE TIME  PATH[ -> TARGET]` among the labels it prints in full,
/// then `N files found.`
fn parse_files(out: &str) -> Result<Vec<String>, String> {
    let mut paths = Vec::new();
    let mut found = None;
    for line in out.lines() {
        if let Some(n) = line.strip_suffix(" files found.") {
            found = Some(n.parse::<usize>().map_err(|_| format!("{line:?}"))?);
            continue;
        }
        let Some(rest) = line.strip_prefix("bls JobId ") else { continue };
        let Some((_, rest)) = rest.split_once(": ") else { continue };
        let mode = rest.split(' ').next().unwrap_or("");
        if mode.len() != 10 || !mode.bytes().all(|b| b"-rwxdlbcpfsStT".contains(&b)) {
            continue;
        }
        // Skip the seven fields before the path (mode to time).
        let mut rest = rest;
        for _ in 0..7 {
            rest = rest.trim_start_matches(' ');
            rest = &rest[rest.find(' ').ok_or_else(|| format!("short listing line {line:?}"))?..];
        }
        let path = rest.trim_start_matches(' ');
        let path = match path.split_once(" -> ") {
            Some((link, _)) if mode.starts_with('l') => link,
            _ => path,
        };
        paths.push(path.to_string());
    }
    match found {
        Some(n) if n == paths.len() => Ok(paths),
        Some(n) => Err(format!("bls counted {n} files, listed {}", paths.len())),
        None => Err("no \"N files found.\" line".to_string()),
    }
}

#[cfg(test)]
mod tests {
    //! The harness against a volume written here, byte by byte, from the
    //! format in docs/formats.md ("Volumes"), independently of Cairn's
    //! writer; and its parsers against output the tools printed.

    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::{Need, needs};

    /// CRC-32 (IEEE, reflected polynomial 0xEDB88320), as in a block header.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    /// Bacula's radix-64 number: most significant digit first, no padding.
    fn radix64(mut v: u64) -> String {
        const DIGITS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        loop {
            out.push(DIGITS[(v & 63) as usize]);
            v >>= 6;
            if v == 0 {
                break;
            }
        }
        out.reverse();
        String::from_utf8(out).expect("ASCII digits")
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    /// A block: 24-byte BB02 header, then the records, no padding.
    fn block(number: u32, session: (u32, u32), records: &[u8]) -> Vec<u8> {
        let len = u32::try_from(24 + records.len()).expect("small block");
        let mut b = vec![0; 4];
        for field in [len, number] {
            b.extend_from_slice(&field.to_be_bytes());
        }
        b.extend_from_slice(b"BB02");
        b.extend_from_slice(&session.0.to_be_bytes());
        b.extend_from_slice(&session.1.to_be_bytes());
        b.extend_from_slice(records);
        let crc = crc32(&b[4..]);
        b[..4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// A record that fits its block: FileIndex, Stream, DataSize, payload.
    fn record(out: &mut Vec<u8>, file_index: i32, stream: i32, payload: &[u8]) {
        out.extend_from_slice(&file_index.to_be_bytes());
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(&u32::try_from(payload.len()).expect("small record").to_be_bytes());
        out.extend_from_slice(payload);
    }

    const ID: &str = "Bacula 1.0 immortal\n";

    fn volume_label(name: &str, btime_us: i64) -> Vec<u8> {
        let mut p = Vec::new();
        string(&mut p, ID);
        p.extend_from_slice(&11u32.to_be_bytes());
        p.extend_from_slice(&btime_us.to_be_bytes()); // label time
        p.extend_from_slice(&btime_us.to_be_bytes()); // write time
        p.extend_from_slice(&[0; 16]); // two float64 0.0
        for s in [name, "", "cairn", "Backup", "File", "testhost", "cairn", "0.1.0", "test"] {
            string(&mut p, s);
        }
        string(&mut p, ""); // AlignedVolumeName
        p.extend_from_slice(&[0; 20]); // FirstData, FileAlignment, PaddingSize, BlockSize
        p
    }

    /// Start (`end` None) or end (`end` = files, bytes) of session label.
    fn session_label(
        job_id: u32,
        btime_us: i64,
        client: &str,
        job: &str,
        end: Option<(u32, u64)>,
    ) -> Vec<u8> {
        let mut p = Vec::new();
        string(&mut p, ID);
        p.extend_from_slice(&11u32.to_be_bytes());
        p.extend_from_slice(&job_id.to_be_bytes());
        p.extend_from_slice(&btime_us.to_be_bytes());
        p.extend_from_slice(&[0; 8]); // float64 0.0
        for s in ["cairn", "Backup", "cairn", client, job, "cairn"] {
            string(&mut p, s);
        }
        p.extend_from_slice(&u32::from(b'B').to_be_bytes());
        p.extend_from_slice(&u32::from(b'F').to_be_bytes());
        string(&mut p, ""); // FileSetMD5
        if let Some((files, bytes)) = end {
            p.extend_from_slice(&files.to_be_bytes());
            p.extend_from_slice(&bytes.to_be_bytes());
            p.extend_from_slice(&[0; 16]); // StartBlock, EndBlock, StartFile, EndFile
            p.extend_from_slice(&0u32.to_be_bytes()); // JobErrors
            p.extend_from_slice(&u32::from(b'T').to_be_bytes());
        }
        p
    }

    struct TinyFile<'a> {
        path: &'a str,
        data: &'a [u8],
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: u64,
    }

    /// Attribute record of a regular file (FT_REG 3) with its data in
    /// stream 2.
    fn attributes(file_index: i32, f: &TinyFile) -> Vec<u8> {
        let size = f.data.len() as u64;
        let stat = [
            2049,
            1000 + file_index as u64,
            u64::from(0o100000 | f.mode),
            1,
            u64::from(f.uid),
            u64::from(f.gid),
            0,
            size,
            4096,
            size.div_ceil(512),
            f.mtime,
            f.mtime,
            f.mtime,
            0, // LinkFI
            0, // st_flags
            2, // data stream
        ];
        let lstat = stat.iter().map(|&n| radix64(n)).collect::<Vec<_>>().join(" ");
        let mut p = format!("{file_index} 3 ").into_bytes();
        for s in [f.path, lstat.as_str(), "", "", "0"] {
            string(&mut p, s);
        }
        p
    }

    /// Writes volume `name` into `dir`: block 0 with the volume label, block
    /// 1 with one session (session number 1, JobId 1) holding `file`.
    fn tiny_volume(dir: &Path, name: &str, time: u32, client: &str, job: &str, file: &TinyFile) {
        let btime = i64::from(time) * 1_000_000;
        let mut label = Vec::new();
        record(&mut label, -2, 0, &volume_label(name, btime));
        let mut session = Vec::new();
        record(&mut session, -4, 1, &session_label(1, btime, client, job, None));
        record(&mut session, 1, 1, &attributes(1, file));
        record(&mut session, 1, 2, file.data);
        let end = Some((1, file.data.len() as u64));
        record(&mut session, -5, 1, &session_label(1, btime, client, job, end));
        let mut volume = block(0, (0, 0), &label);
        volume.extend(block(1, (1, time), &session));
        fs::write(dir.join(name), volume).expect("write volume");
    }

    #[test]
    fn crc_and_radix64_match_known_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(radix64(0), "A");
        assert_eq!(radix64(1000), "Po");
        assert_eq!(radix64(0o100644), "IGk");
        assert_eq!(radix64(1_700_000_000), "BlU/EA");
    }

    #[test]
    fn reads_sessions_files_and_data_of_a_volume_written_by_hand() {
        if !needs(Need::Bacula) {
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let vols = tmp.path().join("volumes");
        fs::create_dir(&vols).expect("mkdir");
        let owner = fs::metadata(tmp.path()).expect("stat tempdir");
        let data = b"written by hand, read by Bacula\n";
        let file = TinyFile {
            path: "/data/hello.txt",
            data,
            mode: 0o640,
            uid: owner.uid(),
            gid: owner.gid(),
            mtime: 1_700_000_000,
        };
        let job = "host-web01.2026-11-22_03.00.00_01";
        tiny_volume(&vols, "cairn-0001", 1_795_316_400, "host-web01", job, &file);
        let other = TinyFile { path: "/data/other.txt", data: b"second volume\n", ..file };
        let job2 = "host-web01.2026-11-23_03.00.00_01";
        tiny_volume(&vols, "cairn-0002", 1_795_402_800, "host-web01", job2, &other);

        let bacula = Bacula::new(&vols, 256 * 1024);
        let sessions = bacula.sessions("cairn-0001").unwrap();
        let want = Session {
            session_id: 1,
            session_time: 1_795_316_400,
            job_id: 1,
            job: job.to_string(),
            files: 1,
            bytes: data.len() as u64,
            errors: 0,
            status: 'T',
        };
        assert_eq!(sessions, [want]);
        assert_eq!(bacula.files("cairn-0001").unwrap(), ["/data/hello.txt"]);

        let target = tmp.path().join("restore");
        let out = bacula.extract("cairn-0001", &target).unwrap();
        assert!(out.contains("1 files restored."), "{out}");
        let restored = target.join("data/hello.txt");
        assert_eq!(fs::read(&restored).unwrap(), data);
        let meta = fs::metadata(&restored).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert_eq!(meta.mtime(), 1_700_000_000);

        // Two volumes at once, as the tools take them.
        let both = bacula.sessions("cairn-0001|cairn-0002").unwrap();
        assert_eq!(both.iter().map(|s| s.job.as_str()).collect::<Vec<_>>(), [job, job2]);
        assert_eq!(bacula.files("cairn-0001|cairn-0002").unwrap(), ["/data/hello.txt", "/data/other.txt"]);

        // A damaged block is an error, with the tool's words in it.
        let path = vols.join("cairn-0002");
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 30;
        bytes[last] ^= 1;
        fs::write(&path, bytes).unwrap();
        let err = bacula.sessions("cairn-0002").unwrap_err();
        assert!(err.contains("checksum mismatch"), "{err}");
        let err = bacula.extract("cairn-0002", &tmp.path().join("restore2")).unwrap_err();
        assert!(err.contains("checksum mismatch"), "{err}");
    }

    const BLS_J: &str = "\
bls: butil.c:292-0 Using device: \"/v\" for reading.
04-Dec 22:53 bls JobId 0: Ready to read from volume \"Main\" on File device \"FileStorage\" (/v).
Volume Record: File:blk=0:0 SessId=0 SessTime=0 JobId=0 DataLen=171
Begin Job Session Record: File:blk=0:0 SessId=1 SessTime=1796424681 JobId=42
   Job=cairn-job.2025-01-01_00.00.00_01 Date=04-Dec-2026 22:53:01 Level=F Type=B
End Job Session Record: File:blk=0:0 SessId=1 SessTime=1796424681 JobId=42
   Date=04-Dec-2026 22:53:01 Level=F Type=B Files=9 Bytes=273,784 Errors=0 Status=T
04-Dec 22:53 bls JobId 0: End of Volume \"Main\" at addr=275615 on device \"FileStorage\" (/v).
";

    #[test]
    fn parses_sessions() {
        let sessions = parse_sessions(BLS_J).unwrap();
        assert_eq!(
            sessions,
            [Session {
                session_id: 1,
                session_time: 1_796_424_681,
                job_id: 42,
                job: "cairn-job.2025-01-01_00.00.00_01".to_string(),
                files: 9,
                bytes: 273_784,
                errors: 0,
                status: 'T',
            }]
        );
        let begin_only: String = BLS_J
            .lines()
            .filter(|l| !l.contains("Files=") && !l.starts_with("End Job"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(parse_sessions(&begin_only).unwrap_err().contains("no end label"));
        let end_only: String = BLS_J.lines().skip(4).map(|l| format!("{l}\n")).collect();
        assert!(parse_sessions(&end_only).unwrap_err().contains("without a start label"));
        assert_eq!(complaint(BLS_J, false), None);
        let crc = "04-Dec 22:53 bls JobId 0: Error: block_util.c:467 Volume data error at 0:0! Block checksum mismatch";
        assert_eq!(complaint(&format!("{BLS_J}{crc}\n"), true), Some(crc));
        let name = "***** ERROR ****** : Found error with the Job name Illegal character \"!\" in name.";
        assert_eq!(complaint(&format!("{BLS_J}{name}\n"), false), Some(name));
        let acl = "04-Dec 22:53 bextract JobId 0: Error: Unknown stream=1008 ignored. This shouldn't happen!";
        assert_eq!(complaint(acl, true), None);
        assert_eq!(complaint(acl, false), Some(acl));
    }

    #[test]
    fn parses_files() {
        let out = "\
bls: butil.c:292-0 Using device: \"/v\" for reading.
bls JobId 0: -rw-r--r--   1 user     user                 14 2023-11-14 22:13:40  /cairn/data/hello.txt
bls JobId 0: lrwxrwxrwx   1 user     user                  9 2023-11-14 22:13:40  /cairn/data/a b -> hello.txt
bls JobId 0: frw-------   1 user     user                  0 2023-11-14 22:13:40  /cairn/data/Error: x
bls JobId 0: drwxr-x---   1 user     user               4096 2022-04-15 05:20:20  /cairn/data/
04-Dec 22:53 bls JobId 0: End of Volume \"Main\" at addr=275615 on device \"FileStorage\" (/v).
4 files found.
";
        let files = parse_files(out).unwrap();
        assert_eq!(
            files,
            ["/cairn/data/hello.txt", "/cairn/data/a b", "/cairn/data/Error: x", "/cairn/data/"]
        );
        assert_eq!(complaint(out, false), None);
        assert!(parse_files(&out.replace("4 files", "5 files")).is_err());
    }
}
