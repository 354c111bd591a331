//! The `source` world: a source handler reads what Cairn cannot read as
//! files (an HTTP export, a database dump) and yields items with their
//! data, which the caller feeds into the normal chunker; on restore it is
//! handed the items back.
//!
//! Unlike the other worlds, one store lives for a whole backup or restore
//! (the guest keeps its state between `next` calls); every call gets the
//! CPU budget afresh, the memory cap holds for the whole session. The
//! guest reaches only what [`Grants`] allow.

use wasmtime::Store;
use wasmtime::component::Component;

use crate::error::PolicyError;
use crate::sandbox::{Grants, Limits, Sandbox, State, describe_failure, reset_budget};
use crate::{Policy, PolicyInfo, clip};

// The source world is the same in 0.1.0 and 0.2.0 but for the version in
// its interface's name: each version has its bindings, sharing the 0.1.0
// types of `cairn:policy/types`; the records of the handler's interface
// are each version's own, and `on_handler!` converts them in each arm.
mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit/since_v0.1.0",
        world: "source",
        with: { "cairn:policy/types": crate::retention::wit },
    });
}

mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../../wit/since_v0.2.0",
        world: "source",
        with: { "cairn:policy/types": crate::retention::wit },
    });
}

use crate::WitVersion;
use crate::retention::wit;

/// A handler's bindings, of the version it was built against.
enum Source {
    V0_1(v0_1::Source),
    V0_2(v0_2::Source),
}

/// Run `$body` with `$h` the handler's interface and `$sh` the module of
/// its records, whichever version `$bindings` is.
macro_rules! on_handler {
    ($bindings:expr, |$h:ident, $sh:ident| $body:expr) => {
        match $bindings {
            Source::V0_1(b) => {
                #[allow(unused_imports)]
                use v0_1::exports::cairn::policy::source_handler as $sh;
                let $h = b.cairn_policy_source_handler();
                $body
            }
            Source::V0_2(b) => {
                #[allow(unused_imports)]
                use v0_2::exports::cairn::policy::source_handler as $sh;
                let $h = b.cairn_policy_source_handler();
                $body
            }
        }
    };
}

impl Source {
    fn instantiate(
        store: &mut Store<State>,
        component: &Component,
        sandbox: &Sandbox,
        version: WitVersion,
    ) -> wasmtime::Result<Self> {
        let linker = sandbox.source_linker();
        Ok(match version {
            WitVersion::V0_1 => Source::V0_1(v0_1::Source::instantiate(store, component, linker)?),
            WitVersion::V0_2 => Source::V0_2(v0_2::Source::instantiate(store, component, linker)?),
        })
    }

    fn call_describe(&self, store: &mut Store<State>) -> wasmtime::Result<wit::PolicyInfo> {
        match self {
            Source::V0_1(b) => b.call_describe(store),
            Source::V0_2(b) => b.call_describe(store),
        }
    }
}

/// What a handler can do (its `capabilities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    pub full: bool,
    pub incremental: bool,
    pub restore: bool,
}

/// A file, a directory or a symbolic link (the shared `model` type).
pub use model::ItemKind;

/// One item a handler yields (or is handed back on restore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceItem {
    /// Relative, `/`-separated.
    pub path: String,
    pub kind: ItemKind,
    pub mode: u32,
    pub mtime: i64,
    /// Symlink target, else empty.
    pub target: String,
    /// Data size, when the handler knows it in advance.
    pub size: Option<u64>,
}

/// One step of a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceStep {
    Item(SourceItem),
    Data(Vec<u8>),
    End,
}

/// Largest data piece a handler may yield in one step (the contract asks
/// for 256 KiB to 1 MiB).
pub const MAX_DATA_STEP: usize = 4 << 20;

/// Default budgets of a source handler: 10 s of CPU per call, 256 MiB of
/// memory for the session.
pub fn default_limits() -> Limits {
    Limits { cpu: std::time::Duration::from_secs(10), memory: 256 << 20 }
}

/// A running source handler: one instance, one store.
pub struct Session {
    store: Store<State>,
    bindings: Source,
    limits: Limits,
    label: String,
    pub features: Features,
    done: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("label", &self.label).field("features", &self.features).finish()
    }
}

pub fn describe(
    sandbox: &Sandbox,
    component: &Component,
    version: WitVersion,
    limits: &Limits,
) -> Result<PolicyInfo, PolicyError> {
    sandbox.describe(
        limits,
        |store| Source::instantiate(store, component, sandbox, version),
        |bindings, store| bindings.call_describe(store),
    )
}

/// Instantiate the handler with `grants` and ask its capabilities.
pub fn open(
    sandbox: &Sandbox,
    policy: &Policy,
    grants: &Grants,
    limits: &Limits,
) -> Result<Session, PolicyError> {
    let label = policy.label();
    let mut store = sandbox.store_with(limits, grants)?;
    let bindings = Source::instantiate(&mut store, &policy.component, sandbox, policy.wit).map_err(|e| {
        PolicyError::Call {
            policy: label.clone(),
            message: describe_failure(&e, limits, &store.data().stderr),
        }
    })?;
    let mut session = Session {
        store,
        bindings,
        limits: *limits,
        label,
        features: Features { full: false, incremental: false, restore: false },
        done: false,
    };
    let f = session.call(|b, s| {
        on_handler!(b, |h, sh| h.call_capabilities(s).map(|f| Ok(Features {
            full: f.full,
            incremental: f.incremental,
            restore: f.restore
        })))
    })?;
    session.features = f;
    Ok(session)
}

fn params(p: &[(String, String)]) -> Vec<wit::Param> {
    p.iter().map(|(k, v)| wit::Param { key: k.clone(), value: v.clone() }).collect()
}

impl Session {
    fn err(&self, message: String) -> PolicyError {
        PolicyError::Call { policy: self.label.clone(), message }
    }

    /// One call with a fresh CPU budget; a guest error or a trap is an
    /// error naming the policy.
    fn call<T>(
        &mut self,
        f: impl FnOnce(&Source, &mut Store<State>) -> wasmtime::Result<Result<T, String>>,
    ) -> Result<T, PolicyError> {
        if self.done {
            return Err(self.err("the handler failed earlier in this session".into()));
        }
        reset_budget(&mut self.store, &self.limits);
        match f(&self.bindings, &mut self.store) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(message)) => Err(self.err(format!("it returned an error: {}", clip(&message)))),
            Err(e) => {
                // A trapped instance cannot be called again.
                self.done = true;
                let message = describe_failure(&e, &self.limits, &self.store.data().stderr);
                Err(self.err(message))
            }
        }
    }

    /// Start a backup (`since`: the previous snapshot's time, for an
    /// incremental one).
    pub fn begin_backup(&mut self, p: &[(String, String)], since: Option<i64>) -> Result<(), PolicyError> {
        let p = params(p);
        self.call(|b, s| on_handler!(b, |h, sh| h.call_begin_backup(s, &p, since)))
    }

    /// The next step, checked: items well-formed, data pieces at most
    /// [`MAX_DATA_STEP`] bytes.
    pub fn next_step(&mut self) -> Result<SourceStep, PolicyError> {
        let step = self.call(|b, s| {
            on_handler!(b, |h, sh| h.call_next(s).map(|r| {
                r.map(|step| match step {
                    sh::Step::End => SourceStep::End,
                    sh::Step::Data(d) => SourceStep::Data(d),
                    sh::Step::Item(i) => SourceStep::Item(SourceItem {
                        path: i.path,
                        kind: match i.kind {
                            sh::ItemKind::File => ItemKind::File,
                            sh::ItemKind::Directory => ItemKind::Directory,
                            sh::ItemKind::Symlink => ItemKind::Symlink,
                        },
                        mode: i.mode,
                        mtime: i.mtime,
                        target: i.target,
                        size: i.size,
                    }),
                })
            }))
        })?;
        if let SourceStep::Data(d) = &step
            && d.len() > MAX_DATA_STEP
        {
            return Err(self.err(format!(
                "it yielded {} bytes of data in one step; at most {} MiB are allowed",
                d.len(),
                MAX_DATA_STEP >> 20
            )));
        }
        Ok(step)
    }

    pub fn begin_restore(&mut self, p: &[(String, String)]) -> Result<(), PolicyError> {
        if !self.features.restore {
            return Err(self.err("it cannot restore (its capabilities say so)".into()));
        }
        let p = params(p);
        self.call(|b, s| on_handler!(b, |h, sh| h.call_begin_restore(s, &p)))
    }

    pub fn restore_item(&mut self, item: &SourceItem) -> Result<(), PolicyError> {
        self.call(|b, s| {
            on_handler!(b, |h, sh| {
                let item = sh::Item {
                    path: item.path.clone(),
                    kind: match item.kind {
                        ItemKind::File => sh::ItemKind::File,
                        ItemKind::Directory => sh::ItemKind::Directory,
                        ItemKind::Symlink => sh::ItemKind::Symlink,
                    },
                    mode: item.mode,
                    mtime: item.mtime,
                    target: item.target.clone(),
                    size: item.size,
                };
                h.call_restore_item(s, &item)
            })
        })
    }

    pub fn restore_data(&mut self, data: &[u8]) -> Result<(), PolicyError> {
        self.call(|b, s| on_handler!(b, |h, sh| h.call_restore_data(s, data)))
    }

    pub fn finish_restore(&mut self) -> Result<(), PolicyError> {
        self.call(|b, s| on_handler!(b, |h, sh| h.call_finish_restore(s)))
    }

    /// What the guest wrote to stderr so far (at most 64 KiB), for logs.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.store.data().stderr.contents()).into_owned()
    }
}
