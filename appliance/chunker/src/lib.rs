//! Chunking and the chunk blob: the bytes of one stored chunk.
//!
//! * [`StreamChunker`] cuts a byte stream content-defined (FastCDC 2020,
//!   normalized level 1) so that an insertion shifts only nearby boundaries;
//!   [`segments`] finds the same cut points with the hashing split into
//!   independent segments, for several threads.
//! * [`FIXED_IMAGE_CHUNK`] is the fixed chunk size of image archives.
//! * [`blob`] encodes and decodes the chunk blob envelope (header + zstd or
//!   plain payload) whose layout is documented in `docs/formats.md`.
//!
//! Invariant: this crate never opens a path and has no workspace
//! dependencies; a reader with this crate alone can decode any chunk file.

pub mod blob;
mod cdc;
mod id;
pub mod segments;

pub use blob::{BlobError, BlobHeader, decode_blob, encode_blob, peek_header, verify_blob};
pub use cdc::{CdcParams, CdcParamsError, StreamChunker};
pub use id::ChunkId;

/// Chunk size of image archives (block devices, VM disks): 4 MiB.
pub const FIXED_IMAGE_CHUNK: usize = 4 << 20;
