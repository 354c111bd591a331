//! The policy host's integration tests, one test binary (each binary links
//! wasmtime, which makes linking the slow part of building them). The
//! compiler-child tests are apart, in `tests/compile_child.rs`: that binary
//! has its own `main`.

mod cache;
mod cases;
mod legacy;
mod python;
mod retention;
mod scheduler;
mod source;
