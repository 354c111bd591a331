//! Stream numbers: what a record holds. The numbers are Bacula's, so its
//! tools know what to do with each; `CAIRN` rides in a stream they skip.

/// A file's attributes (name, type, `stat` fields, link target).
pub const UNIX_ATTRIBUTES: i32 = 1;
/// A file's data, appended in order.
pub const FILE_DATA: i32 = 2;
/// A file's data as pieces each led by its 8-byte big-endian offset; the
/// gaps read as zeros (holes).
pub const SPARSE_DATA: i32 = 6;
/// A restore object: Bacula's tools skip it silently, which makes it the
/// carrier of Cairn's own records (see [`CAIRN_MAGIC`]).
pub const CAIRN: i32 = 28;
/// Linux POSIX ACLs as `acl_to_text` text: the default and the access ACL.
pub const ACL_LINUX_DEFAULT: i32 = 1007;
pub const ACL_LINUX_ACCESS: i32 = 1008;
/// Linux extended attributes.
pub const XATTR_LINUX: i32 = 1998;

/// The first bytes of every Cairn record in stream [`CAIRN`].
pub const CAIRN_MAGIC: &[u8; 6] = b"CAIRN\x01";
/// A Cairn record's kind (the byte after the magic): the blake3 digest of
/// the file's data.
pub const CAIRN_DIGEST: u8 = 1;
/// A Cairn record's kind: the session's snapshot (manifest JSON).
pub const CAIRN_SNAPSHOT: u8 = 2;
/// A Cairn record's kind: the file's entry as Cairn's archive keeps it
/// (all its metadata), right after its attribute record.
pub const CAIRN_ENTRY: u8 = 3;
/// A Cairn record kind: a cartridge's media label (JSON: its media set,
/// pool and place in the set), in block 0 after the volume label.
pub const CAIRN_MEDIA: u8 = 4;

/// Bacula's tools read only the low 11 bits of a stream number; the
/// others are flags Cairn never sets.
pub const STREAM_TYPE_MASK: i32 = 0x7ff;
