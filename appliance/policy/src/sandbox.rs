//! The wasmtime engine, the per-call store with its budgets, and the
//! minimal WASI a guest built with Rust's standard library needs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::uri::Scheme;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, Resource, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store, StoreLimits,
    StoreLimitsBuilder, Trap,
};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    Deterministic, FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView,
};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use crate::error::PolicyError;
use crate::{PolicyInfo, WitVersion, World};

/// How often the ticker advances the engine's epoch; the CPU budget is
/// counted in these ticks.
const TICK: Duration = Duration::from_millis(10);
/// Captured guest output per stream.
const OUTPUT_CAPACITY: usize = 64 << 10;
/// WIT package versions this host can run.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.1.0", "0.2.0"];

/// Budgets for one call into a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock CPU budget (enforced with epoch interruption).
    pub cpu: Duration,
    /// Most linear memory the guest may hold, in bytes.
    pub memory: usize,
}

/// Per-call store data.
pub struct State {
    ctx: WasiCtx,
    table: ResourceTable,
    limits: Budget,
    pub stderr: MemoryOutputPipe,
    http: WasiHttpCtx,
    /// The hosts a source guest may reach (none for the other worlds,
    /// whose linker has no `wasi:http` at all).
    net: Net,
}

/// What a source handler may reach, granted by the job that runs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// A directory the guest sees read-only as `/source`.
    pub dir: Option<std::path::PathBuf>,
    /// `host:port` authorities the guest may send HTTP(S) requests to.
    pub hosts: Vec<String>,
}

/// Longest a source guest's HTTP request may wait to connect, and for a
/// response or the next bytes of one (whatever the guest asks for): the
/// epoch cannot interrupt a guest waiting in the host.
const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HTTP_WAIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The `wasi:http` hooks: only granted authorities, bounded waits.
#[derive(Debug, Clone, Default)]
struct Net {
    hosts: Vec<String>,
}

impl WasiHttpHooks for Net {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>),
                    HttpError,
                >,
            > + Send,
    > {
        drop(fut);
        let allowed = request.uri().authority().is_some_and(|a| {
            let port =
                a.port_u16().unwrap_or(if request.uri().scheme() == Some(&Scheme::HTTPS) { 443 } else { 80 });
            let wanted = format!("{}:{port}", a.host().to_ascii_lowercase());
            self.hosts.iter().any(|h| h.eq_ignore_ascii_case(&wanted))
        });
        let bounded = |asked: Option<Duration>, cap: Duration| Some(asked.map_or(cap, |d| d.min(cap)));
        let options = RequestOptions {
            connect_timeout: bounded(options.and_then(|o| o.connect_timeout), HTTP_CONNECT_TIMEOUT),
            first_byte_timeout: bounded(options.and_then(|o| o.first_byte_timeout), HTTP_WAIT_TIMEOUT),
            between_bytes_timeout: bounded(options.and_then(|o| o.between_bytes_timeout), HTTP_WAIT_TIMEOUT),
        };
        Box::new(async move {
            if !allowed {
                tracing::warn!(uri = %request.uri(), "source policy: request to a host the job does not grant");
                return Err(HttpError::HttpRequestDenied);
            }
            // The per-step timeouts do not cover the TLS handshake or the
            // lookup: bound the whole exchange up to the response head too.
            let send = crate::net::send(request, options);
            tokio::time::timeout(HTTP_CONNECT_TIMEOUT + HTTP_WAIT_TIMEOUT, send)
                .await
                .map_err(|_| HttpError::ConnectionTimeout)?
        })
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.net }
    }
}

/// The memory cap counts every linear memory of the store together (a
/// component may hold several); instance, table and memory counts come
/// from `StoreLimits`.
struct Budget {
    counts: StoreLimits,
    total: usize,
    cap: usize,
}

impl ResourceLimiter for Budget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = desired.saturating_sub(current);
        if self.total.saturating_add(grow) > self.cap {
            wasmtime::bail!(
                "forcing trap when growing memory to {desired} bytes: all memories together may hold {} MiB",
                self.cap >> 20
            );
        }
        self.total += grow;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.counts.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.counts.instances()
    }

    fn tables(&self) -> usize {
        self.counts.tables()
    }

    fn memories(&self) -> usize {
        self.counts.memories()
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.ctx, table: &mut self.table }
    }
}

/// Where a store's `wasi:random` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Randomness {
    /// A fixed seed: retention and scheduler policies are pure functions
    /// of their arguments.
    Fixed,
    /// The operating system's random source (wasmtime-wasi's default): a
    /// source handler may need unpredictable bytes.
    Os,
}

/// A clock stopped at the Unix epoch: policies get `now` as an argument.
struct Frozen;

impl HostWallClock for Frozen {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for Frozen {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

pub struct Sandbox {
    engine: Engine,
    /// Retention and scheduler guests: the minimal WASI only.
    linker: Linker<State>,
    /// Source guests: that, plus `wasi:http` outgoing requests (to the
    /// granted hosts only).
    source_linker: Linker<State>,
    stop: Arc<AtomicBool>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The engine configuration every policy compiles and runs with. The
/// compiler child process builds its engine from the same function, so
/// what it compiles deserializes in the parent (and the artifact cache's
/// fingerprint changes whenever this does).
pub fn config() -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(512 << 10)
        .cranelift_nan_canonicalization(true);
    // Built without wasmtime's `parallel-compilation` feature: a component
    // compiles on the calling thread only, so a hostile one cannot fan out
    // over every core.
    config
}

/// An engine with [`config`]: the sandbox adds its epoch ticker and
/// linker, the compiler child process uses it bare.
pub fn compile_engine() -> Result<Engine, PolicyError> {
    Engine::new(&config()).map_err(|e| PolicyError::Host(format!("{e:#}")))
}

/// The checks made before compiling anything: the size cap, and a clear
/// message for a core module (the commonest mistake).
pub fn precheck(bytes: &[u8]) -> Result<(), PolicyError> {
    if bytes.len() > crate::MAX_COMPONENT_BYTES {
        return Err(PolicyError::Invalid(format!(
            "component of {} bytes is larger than the {} MiB limit",
            bytes.len(),
            crate::MAX_COMPONENT_BYTES >> 20
        )));
    }
    if !bytes.starts_with(b"\0asm") {
        return Err(PolicyError::Invalid(
            "this is not a WebAssembly component (it does not start with \\0asm)".into(),
        ));
    }
    if bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0] {
        return Err(PolicyError::Invalid(
            "this is a core WebAssembly module, not a component; build for wasm32-wasip2 \
             (or wrap it with `wasm-tools component new`)"
                .into(),
        ));
    }
    Ok(())
}

/// The minimal WASI every guest gets.
fn base_linker(engine: &Engine) -> wasmtime::Result<Linker<State>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    // Waiting happens in the host, where the epoch cannot interrupt it:
    // a guest that sleeps would stall the caller for as long as it asks.
    // Policies get `now` as an argument and have nothing to wait for, so
    // both ways to wait on the clock trap instead.
    linker.allow_shadowing(true);
    let mut clock = linker.instance("wasi:clocks/monotonic-clock@0.2.12")?;
    for name in ["subscribe-duration", "subscribe-instant"] {
        clock.func_wrap(name, |_store, (_when,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
            Err(wasmtime::Error::msg("policies may not sleep or wait on a clock (`now` is an argument)"))
        })?;
    }
    linker.allow_shadowing(false);
    Ok(linker)
}

/// Instances this process runs at once, at most: each call, and each
/// open source session, holds one component instance (several core
/// instances and memories in a component built from an interpreter).
const POOL_COMPONENT_INSTANCES: u32 = 128;

/// The instance pool calls run in. Every call gets a fresh store, so
/// instantiation is on every call's path: the pool reserves the address
/// space of memories and tables once and reuses the slots, and a slot's
/// first pages are zeroed in place rather than returned to the kernel and
/// faulted in again (a decision over 10,000 snapshots spent about a tenth
/// of its time in page faults and unmapping without it). The slots'
/// sizes are wasm32's own ceilings: the limits that matter are each
/// call's [`Limits`], which the store enforces.
fn pool() -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_COMPONENT_INSTANCES)
        .total_core_instances(POOL_COMPONENT_INSTANCES * 8)
        .total_memories(POOL_COMPONENT_INSTANCES * 2)
        .total_tables(POOL_COMPONENT_INSTANCES * 8)
        .max_memory_size(4 << 30)
        .table_elements(100_000)
        .linear_memory_keep_resident(8 << 20)
        .table_keep_resident(64 << 10);
    pool
}

impl Sandbox {
    pub fn new() -> Result<Sandbox, PolicyError> {
        let host = |e: wasmtime::Error| PolicyError::Host(format!("{e:#}"));
        // The compiler child builds a bare engine from the same `config`;
        // how instances are allocated does not change compiled code.
        let mut config = config();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool()));
        let engine = Engine::new(&config).map_err(host)?;
        let linker = base_linker(&engine).map_err(host)?;
        let mut source_linker = base_linker(&engine).map_err(host)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut source_linker).map_err(host)?;
        crate::fsguard::refuse_special_files(&mut source_linker).map_err(host)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ticking, stopped) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("policy-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| PolicyError::Host(format!("cannot start the epoch ticker: {e}")))?;
        Ok(Sandbox { engine, linker, source_linker, stop })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compile in this process (after [`precheck`]).
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, PolicyError> {
        precheck(bytes)?;
        Component::new(&self.engine, bytes).map_err(|e| PolicyError::Invalid(format!("{e:#}")))
    }

    /// Which world, at which WIT version, a component targets: from its
    /// exports (`decide` with a `snapshots`, `group` or `job` parameter, or the
    /// `source-handler` interface) and from the `cairn:policy/types@V`
    /// interface it imports.
    pub fn world_of(&self, component: &Component) -> Result<(World, WitVersion), PolicyError> {
        let ty = component.component_type();
        let mut version = None;
        for (name, _) in ty.imports(&self.engine) {
            if let Some(v) = name.strip_prefix("cairn:policy/types@") {
                version = Some(v.to_owned());
            }
        }
        let mut world = None;
        for (name, ext) in ty.exports(&self.engine) {
            if let Some(v) = name.strip_prefix("cairn:policy/source-handler@") {
                world = Some(World::Source);
                version.get_or_insert_with(|| v.to_owned());
            }
            if name == "decide"
                && let ComponentItem::ComponentFunc(f) = &ext.ty
            {
                world = match f.params().next().map(|(n, _)| n) {
                    // 0.1.0 passes the snapshots first, 0.2.0 the group.
                    Some("snapshots" | "group") => Some(World::Retention),
                    Some("job") => Some(World::Scheduler),
                    _ => world,
                };
            }
        }
        let world = world.ok_or_else(|| {
            PolicyError::Invalid(
                "the component exports no cairn:policy world (retention, scheduler or source)".into(),
            )
        })?;
        let version = version.ok_or_else(|| {
            PolicyError::Invalid("the component does not use the cairn:policy types interface".into())
        })?;
        let Some(version) = WitVersion::parse(&version) else {
            return Err(PolicyError::Invalid(format!(
                "cairn:policy@{version} is not supported; this build runs {}",
                SUPPORTED_VERSIONS.join(", ")
            )));
        };
        Ok((world, version))
    }

    /// A fresh store for one call, with its budgets set, and the fixed
    /// random source of a deterministic policy.
    pub fn store(&self, limits: &Limits) -> Store<State> {
        self.build(limits, &Grants::default(), Randomness::Fixed).expect("a store without grants cannot fail")
    }

    /// A fresh store for a source guest: the budgets, the operating
    /// system's randomness (a handler may make nonces or temporary names),
    /// and what `grants` allows (the directory read-only as `/source`, the
    /// hosts through `wasi:http`). Use with [`Sandbox::source_linker`].
    pub fn store_with(&self, limits: &Limits, grants: &Grants) -> Result<Store<State>, PolicyError> {
        self.build(limits, grants, Randomness::Os)
    }

    /// Instantiate a component in a fresh store under `limits` and call
    /// its `describe` export. Every world's bindings are another type with
    /// the same two steps: `instantiate` (with the world's linker) and
    /// `call` (its `call_describe`). A failure refuses the component.
    pub fn describe<B, I: Into<PolicyInfo>>(
        &self,
        limits: &Limits,
        instantiate: impl FnOnce(&mut Store<State>) -> wasmtime::Result<B>,
        call: impl FnOnce(&B, &mut Store<State>) -> wasmtime::Result<I>,
    ) -> Result<PolicyInfo, PolicyError> {
        let mut store = self.store(limits);
        let bindings = instantiate(&mut store)
            .map_err(|e| PolicyError::Invalid(format!("cannot instantiate: {e:#}")))?;
        let info = call(&bindings, &mut store);
        info.map(Into::into).map_err(|e| describe_error(&e, limits, &store))
    }

    /// Instantiate a component in a fresh store under `limits` and make
    /// one call: a failed instantiation, a trap, an exhausted budget or the
    /// guest's own error is a [`PolicyError::Call`] naming `policy`.
    pub fn call<B, T>(
        &self,
        policy: &crate::Policy,
        limits: &Limits,
        instantiate: impl FnOnce(&mut Store<State>) -> wasmtime::Result<B>,
        call: impl FnOnce(&B, &mut Store<State>) -> wasmtime::Result<Result<T, String>>,
    ) -> Result<T, PolicyError> {
        let call_err = |message: String| PolicyError::Call { policy: policy.label(), message };
        let mut store = self.store(limits);
        let bindings = instantiate(&mut store)
            .map_err(|e| call_err(describe_failure(&e, limits, &store.data().stderr)))?;
        match call(&bindings, &mut store) {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(message)) => Err(call_err(format!("it returned an error: {}", crate::clip(&message)))),
            Err(e) => Err(call_err(describe_failure(&e, limits, &store.data().stderr))),
        }
    }

    fn build(
        &self,
        limits: &Limits,
        grants: &Grants,
        random: Randomness,
    ) -> Result<Store<State>, PolicyError> {
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let mut builder = WasiCtx::builder();
        if let Some(dir) = &grants.dir {
            builder.preopened_dir(dir, "/source", FsPerms::ReadOnly).map_err(|e| {
                PolicyError::Host(format!("cannot grant the directory {}: {e:#}", dir.display()))
            })?;
        }
        if random == Randomness::Fixed {
            builder
                .secure_random(Deterministic::new(vec![0x5a, 0x17, 0xc3, 0x08]))
                .insecure_random(Deterministic::new(vec![0x2b, 0x91]))
                .insecure_random_seed(0x0123_4567_89ab_cdef);
        }
        let ctx = builder
            .stdout(MemoryOutputPipe::new(OUTPUT_CAPACITY))
            .stderr(stderr.clone())
            .wall_clock(Frozen)
            .monotonic_clock(Frozen)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = State {
            ctx,
            table: {
                let mut t = ResourceTable::new();
                t.set_max_capacity(1024);
                t
            },
            limits: Budget {
                counts: StoreLimitsBuilder::new()
                    .trap_on_grow_failure(true)
                    .instances(64)
                    .tables(64)
                    .memories(16)
                    .table_elements(100_000)
                    .build(),
                total: 0,
                cap: limits.memory,
            },
            stderr,
            http: WasiHttpCtx::new(),
            net: Net { hosts: grants.hosts.clone() },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        reset_budget(&mut store, limits);
        Ok(store)
    }

    pub fn linker(&self) -> &Linker<State> {
        &self.linker
    }

    pub fn source_linker(&self) -> &Linker<State> {
        &self.source_linker
    }
}

/// Give the store a fresh CPU budget of `limits.cpu` from now: a store
/// that lives for many calls (a source handler's) gets it before each.
pub fn reset_budget(store: &mut Store<State>, limits: &Limits) {
    let ticks = limits.cpu.as_millis().div_ceil(TICK.as_millis()).max(1) as u64;
    // One tick more than the budget: the first tick may come at once.
    store.set_epoch_deadline(ticks + 1);
}

/// A failed `describe` at load time: the component is refused.
fn describe_error(err: &wasmtime::Error, limits: &Limits, store: &Store<State>) -> PolicyError {
    PolicyError::Invalid(format!("describe: {}", describe_failure(err, limits, &store.data().stderr)))
}

/// A readable message for a failed call, naming the budget that ran out.
pub fn describe_failure(err: &wasmtime::Error, limits: &Limits, stderr: &MemoryOutputPipe) -> String {
    let base = match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => format!("ran out of its CPU budget of {} ms", limits.cpu.as_millis()),
        Some(Trap::StackOverflow) => "overflowed its stack (512 KiB)".to_owned(),
        // Rust and C guests keep their own stack in linear memory; running
        // off its end is an out-of-bounds access.
        Some(Trap::MemoryOutOfBounds) => {
            "accessed memory out of bounds (typically its own stack overflowed)".to_owned()
        }
        Some(Trap::UnreachableCodeReached) => "trapped (panicked or aborted)".to_owned(),
        Some(t) => format!("trapped: {t}"),
        None => {
            let text = format!("{err:#}");
            if text.contains("memory") && text.contains("limit") || text.contains("forcing trap when growing")
            {
                format!("went over its memory limit of {} MiB", limits.memory >> 20)
            } else {
                text
            }
        }
    };
    let out = stderr.contents();
    let tail = crate::clip(String::from_utf8_lossy(&out[out.len().saturating_sub(300)..]).trim());
    if tail.is_empty() { base } else { format!("{base}; its stderr ends: {tail}") }
}
