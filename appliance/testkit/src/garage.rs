//! A real Garage cluster on loopback for the S3 datastore's tests: one
//! node, or several with a replication factor equal to their number.
//! Nodes can be stopped and started again; everything stops on drop.
//!
//! The `garage` binary is taken from `CAIRN_GARAGE`, else from the cache
//! `scripts/test-all.sh` builds it into, else from `PATH`.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where `scripts/test-all.sh` keeps the binary it built.
pub const CACHED_BINARY: &str = "/var/cache/cairn-test/garage/bin/garage";

/// Test credentials every cluster gets (a fixed key, imported).
pub const KEY_ID: &str = "GK31c2f218a2e44f485b94239e";
pub const SECRET: &str = "b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f5f8a5d8cb9d8ef13";

pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_GARAGE") {
        return PathBuf::from(p);
    }
    if Path::new(CACHED_BINARY).is_file() {
        return PathBuf::from(CACHED_BINARY);
    }
    PathBuf::from("garage")
}

/// A loopback port nobody listens on, never handed out twice in this
/// process (tests start clusters on parallel threads).
fn free_port() -> u16 {
    static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut taken = TAKEN.lock().expect("ports lock");
    let taken = taken.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind a loopback port")
            .local_addr()
            .expect("addr")
            .port();
        if taken.insert(port) {
            return port;
        }
    }
}

struct Node {
    dir: PathBuf,
    config: PathBuf,
    s3_port: u16,
    rpc_port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    /// Pick new ports and write the node's configuration.
    fn configure(&mut self, replication: usize, secret: &str) {
        (self.s3_port, self.rpc_port) = (free_port(), free_port());
        let text = format!(
            "metadata_dir = \"{meta}\"\n\
             data_dir = \"{data}\"\n\
             db_engine = \"sqlite\"\n\
             replication_factor = {replication}\n\
             rpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_secret = \"{secret}\"\n\
             [s3_api]\n\
             s3_region = \"garage\"\n\
             api_bind_addr = \"127.0.0.1:{s3}\"\n\
             root_domain = \".s3.garage.localhost\"\n",
            meta = self.dir.join("meta").display(),
            data = self.dir.join("data").display(),
            rpc = self.rpc_port,
            s3 = self.s3_port,
        );
        std::fs::write(&self.config, text).expect("garage config");
    }
}

/// A running cluster. `endpoint()` is node 0's S3 API.
pub struct Garage {
    dir: PathBuf,
    nodes: Vec<Node>,
    bin: PathBuf,
    /// This cluster's own RPC secret: its CLI can never reach another
    /// test's cluster.
    secret: String,
}

impl Garage {
    /// Start `n` nodes under `dir` with replication factor `n`, lay them
    /// out (one zone each), and import the test key.
    pub fn start(dir: &Path, n: usize) -> Self {
        let bin = binary();
        let secret: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        let mut nodes = Vec::new();
        for i in 0..n {
            let nd = dir.join(format!("node{i}"));
            std::fs::create_dir_all(nd.join("meta")).expect("garage dir");
            std::fs::create_dir_all(nd.join("data")).expect("garage dir");
            let config = nd.join("garage.toml");
            let log = nd.join("garage.log");
            let mut node = Node { dir: nd, config, s3_port: 0, rpc_port: 0, child: None, log };
            node.configure(n, &secret);
            nodes.push(node);
        }
        let mut g = Garage { dir: dir.to_owned(), nodes, bin, secret };
        for i in 0..n {
            g.first_start(i);
        }
        let ids: Vec<String> = (0..n).map(|i| g.node_id(i)).collect();
        for (i, id) in ids.iter().enumerate().skip(1) {
            g.cli_retry(0, &["node", "connect", &format!("{id}@127.0.0.1:{}", g.nodes[i].rpc_port)]);
        }
        for (i, id) in ids.iter().enumerate() {
            g.cli_retry(0, &["layout", "assign", "-z", &format!("dc{i}"), "-c", "1G", id]);
        }
        g.cli_retry(0, &["layout", "apply", "--version", "1"]);
        g.cli_retry(0, &["key", "import", "-n", "cairn-test", "--yes", KEY_ID, SECRET]);
        g
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.nodes[0].s3_port)
    }

    pub fn region(&self) -> &'static str {
        "garage"
    }

    /// Create a bucket the test key may read, write and own.
    pub fn create_bucket(&self, name: &str) {
        self.cli_retry(0, &["bucket", "create", name]);
        self.cli_retry(0, &["bucket", "allow", "--read", "--write", "--owner", name, "--key", "cairn-test"]);
    }

    /// Import another key with no rights on any bucket.
    pub fn import_key(&self, name: &str, id: &str, secret: &str) {
        self.cli_retry(0, &["key", "import", "-n", name, "--yes", id, secret]);
    }

    /// Start node `i` again (after `stop_node`), on the same ports, and
    /// wait until its S3 port answers.
    pub fn start_node(&mut self, i: usize) {
        if let Err(why) = self.launch(i) {
            panic!("{why}");
        }
    }

    /// Start node `i` for the first time: when it cannot (a port taken
    /// meanwhile by another program), again on new ports.
    fn first_start(&mut self, i: usize) {
        let mut tries = 0;
        while let Err(why) = self.launch(i) {
            tries += 1;
            assert!(tries < 4, "{why}");
            let n = self.nodes.len();
            let secret = self.secret.clone();
            self.nodes[i].configure(n, &secret);
        }
    }

    fn launch(&mut self, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log).expect("garage log");
        let mut child = Command::new(&self.bin)
            .arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} ({e}); set CAIRN_GARAGE", self.bin.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = std::fs::read_to_string(&node.log).unwrap_or_default();
                let tail: String = tail.lines().rev().take(5).collect::<Vec<_>>().join(" / ");
                return Err(format!("garage node {i} exited at start ({status}): {tail}"));
            }
            if std::net::TcpStream::connect(("127.0.0.1", node.s3_port)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("garage node {i} did not open its S3 port; see {}", node.log.display()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        node.child = Some(child);
        Ok(())
    }

    /// Kill node `i` (SIGKILL, as a crash or a pulled cable).
    pub fn stop_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn node_id(&self, i: usize) -> String {
        let out = self.cli_retry(i, &["node", "id", "-q"]);
        out.trim().split('@').next().expect("node id").to_owned()
    }

    /// Run a `garage` command against node `i`, retrying while the node is
    /// still starting; its stdout.
    pub fn cli_retry(&self, i: usize, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new(&self.bin)
                .arg("-c")
                .arg(&self.nodes[i].config)
                .args(args)
                .output()
                .expect("run garage");
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            if Instant::now() > deadline {
                panic!("garage {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Where node `i` keeps its data blocks (to damage one in a test).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{i}")).join("data")
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop_node(i);
        }
    }
}
