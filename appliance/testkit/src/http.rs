//! A small HTTP/1.1 server on loopback for tests of source handlers: it
//! serves one export at a path and keeps what is uploaded to it (PUT or
//! POST, with a Content-Length or chunked), so a test can check both
//! directions byte for byte.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The server; it stops when the test process ends.
pub struct ExportServer {
    pub port: u16,
    log: Arc<Mutex<Vec<Request>>>,
}

impl ExportServer {
    /// Serve `export` at `path` (GET); anything uploaded is logged and
    /// answered 204; anything else 404.
    pub fn start(path: &str, export: Vec<u8>) -> ExportServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (path, export, seen) = (path.to_owned(), Arc::new(export), log.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (path, export, seen) = (path.clone(), export.clone(), seen.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &path, &export, &seen);
                });
            }
        });
        ExportServer { port, log }
    }

    /// `127.0.0.1:PORT`.
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The requests answered so far.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, path: &str, export: &[u8], log: &Mutex<Vec<Request>>) -> std::io::Result<()> {
    let mut out = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let get =
            |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut size = String::new();
                r.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| std::io::Error::other("bad chunk size"))?;
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        }
        let answer: (u16, &[u8]) = match method.as_str() {
            "GET" if target == path => (200, export),
            "PUT" | "POST" if target == path => (204, b""),
            _ => (404, b"not found"),
        };
        log.lock().unwrap().push(Request { method, path: target, headers, body });
        let reason = match answer.0 {
            200 => "OK",
            204 => "No Content",
            _ => "Not Found",
        };
        write!(out, "HTTP/1.1 {} {reason}\r\n", answer.0)?;
        if answer.0 != 204 {
            write!(out, "Content-Length: {}\r\n", answer.1.len())?;
        }
        write!(out, "Content-Type: application/octet-stream\r\n\r\n")?;
        out.write_all(answer.1)?;
        out.flush()?;
    }
}
