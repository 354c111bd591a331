//! `source-http`: a Cairn source handler that backs up what an HTTP(S)
//! endpoint serves (a database or application export, say) as one file,
//! and restores it by uploading that file back.
//!
//! It reaches the network only through `wasi:http` outgoing requests, and
//! the host lets those through only to the hosts the job grants
//! (`--allow-host HOST:PORT`).
//!
//! Parameters:
//! - `url` (required): `http://` or `https://` address of the export;
//! - `name`: the file's name in the snapshot (default: the last segment of
//!   the URL's path, else `export`);
//! - `restore-url`: where a restore uploads the file (default: `url`);
//! - `restore-method`: `PUT` (default) or `POST`;
//! - `authorization`: an `Authorization` header value for both directions.

wit_bindgen::generate!({ path: "../../wit", world: "source" });

use std::cell::RefCell;

use exports::cairn::policy::source_handler::{Features, Guest as Handler, Item, ItemKind, Step};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, IncomingResponse, InputStream, Method,
    OutgoingBody, OutgoingRequest, OutputStream, Scheme,
};
use wasip2::io::streams::StreamError;

use cairn::policy::types::Param;

/// Gather at least this much before yielding a data step (the host wants
/// 256 KiB to 1 MiB per step).
const STEP_MIN: usize = 256 << 10;
const STEP_MAX: usize = 1 << 20;

struct SourceHttp;

/// A parsed `http(s)://authority/path?query`.
#[derive(Debug, Clone)]
struct Url {
    https: bool,
    authority: String,
    path: String,
}

fn parse_url(url: &str) -> Result<Url, String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url:?} is not an http:// or https:// address"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!(
            "{url:?} has no host, or has credentials in it (use the authorization parameter)"
        ));
    }
    Ok(Url { https, authority: authority.to_owned(), path: path.to_owned() })
}

struct Params {
    url: Url,
    url_text: String,
    name: String,
    restore_url: Url,
    restore_method: Method,
    authorization: Option<String>,
}

fn params(list: &[Param]) -> Result<Params, String> {
    let get = |k: &str| list.iter().find(|p| p.key == k).map(|p| p.value.clone());
    for p in list {
        if !["url", "name", "restore-url", "restore-method", "authorization"].contains(&p.key.as_str()) {
            return Err(format!(
                "unknown parameter {:?} (url, name, restore-url, restore-method, authorization)",
                p.key
            ));
        }
    }
    let url_text = get("url").ok_or("the url parameter is required (--param url=http://host:port/path)")?;
    let url = parse_url(&url_text)?;
    let default_name = url
        .path
        .split(['?', '#'])
        .next()
        .and_then(|p| p.rsplit('/').next())
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .unwrap_or("export")
        .to_owned();
    let name = get("name").unwrap_or(default_name);
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(format!("name {name:?} must be a plain file name"));
    }
    let restore_url = match get("restore-url") {
        Some(u) => parse_url(&u)?,
        None => url.clone(),
    };
    let restore_method = match get("restore-method").as_deref() {
        None | Some("PUT") => Method::Put,
        Some("POST") => Method::Post,
        Some(other) => return Err(format!("restore-method {other:?}: PUT or POST")),
    };
    Ok(Params { url, url_text, name, restore_url, restore_method, authorization: get("authorization") })
}

fn request(method: &Method, url: &Url, authorization: &Option<String>) -> Result<OutgoingRequest, String> {
    let mut headers = Vec::new();
    if let Some(a) = authorization {
        headers.push(("authorization".to_owned(), a.as_bytes().to_vec()));
    }
    let fields = Fields::from_list(&headers).map_err(|e| format!("bad header: {e:?}"))?;
    let req = OutgoingRequest::new(fields);
    let bad = |what: &str| format!("the host refused the request's {what}");
    req.set_method(method).map_err(|()| bad("method"))?;
    req.set_scheme(Some(if url.https { &Scheme::Https } else { &Scheme::Http }))
        .map_err(|()| bad("scheme"))?;
    req.set_authority(Some(&url.authority)).map_err(|()| bad("host"))?;
    req.set_path_with_query(Some(&url.path)).map_err(|()| bad("path"))?;
    Ok(req)
}

fn wait(future: &FutureIncomingResponse, what: &str) -> Result<IncomingResponse, String> {
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(resp))) => Ok(resp),
        Some(Ok(Err(e))) => Err(format!("{what}: {}", describe(&e))),
        Some(Err(())) | None => Err(format!("{what}: no response")),
    }
}

fn describe(e: &ErrorCode) -> String {
    match e {
        ErrorCode::HttpRequestDenied => {
            "the job does not allow this host (grant it with --allow-host)".into()
        }
        ErrorCode::ConnectionRefused => "connection refused".into(),
        other => format!("{other:?}"),
    }
}

/// Backup: the response being read, fields in drop order (a stream before
/// its body, the body before its response).
struct Download {
    stream: InputStream,
    _body: IncomingBody,
    _response: IncomingResponse,
}

enum State {
    Idle,
    /// Begun: the item is next, then its data.
    Item {
        item: Item,
        download: Download,
    },
    Data {
        download: Download,
    },
    Restoring {
        params: Params,
        upload: Option<Upload>,
        files: u32,
    },
}

/// Restore: the request being sent, fields in drop order.
struct Upload {
    out: OutputStream,
    body: OutgoingBody,
    response: FutureIncomingResponse,
    path: String,
}

thread_local! {
    static STATE: RefCell<State> = const { RefCell::new(State::Idle) };
}

impl Guest for SourceHttp {
    fn describe() -> PolicyInfo {
        let p = |k: &str, v: &str| Param { key: k.into(), value: v.into() };
        PolicyInfo {
            name: "source-http".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Backs up the export an HTTP(S) endpoint serves as one file and restores it by uploading it back. Needs the endpoint's host granted (--allow-host HOST:PORT).".into(),
            params: vec![
                p("url", "http:// or https:// address of the export (required)"),
                p("name", "file name in the snapshot (default: the URL's last path segment)"),
                p("restore-url", "where a restore uploads the file (default: url)"),
                p("restore-method", "PUT (default) or POST"),
                p("authorization", "Authorization header value sent both ways"),
            ],
        }
    }
}

impl Handler for SourceHttp {
    fn capabilities() -> Features {
        Features { full: true, incremental: false, restore: true }
    }

    fn begin_backup(list: Vec<Param>, _since: Option<i64>) -> Result<(), String> {
        let p = params(&list)?;
        let req = request(&Method::Get, &p.url, &p.authorization)?;
        let future = outgoing_handler::handle(req, None)
            .map_err(|e| format!("GET {}: {}", p.url_text, describe(&e)))?;
        let response = wait(&future, &format!("GET {}", p.url_text))?;
        let status = response.status();
        if !(200..300).contains(&status) {
            return Err(format!("GET {} answered {status}", p.url_text));
        }
        let size = response
            .headers()
            .get("content-length")
            .first()
            .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
        let body = response.consume().map_err(|()| "the response has no body".to_owned())?;
        let stream = body.stream().map_err(|()| "the response body cannot be read".to_owned())?;
        let item =
            Item { path: p.name, kind: ItemKind::File, mode: 0o644, mtime: 0, target: String::new(), size };
        let download = Download { stream, _body: body, _response: response };
        STATE.with(|s| *s.borrow_mut() = State::Item { item, download });
        Ok(())
    }

    fn next() -> Result<Step, String> {
        STATE.with(|s| {
            let mut state = s.borrow_mut();
            match std::mem::replace(&mut *state, State::Idle) {
                State::Item { item, download } => {
                    *state = State::Data { download };
                    Ok(Step::Item(item))
                }
                State::Data { download } => {
                    let mut buf = Vec::new();
                    let mut ended = false;
                    while buf.len() < STEP_MIN {
                        match download.stream.blocking_read((STEP_MAX - buf.len()) as u64) {
                            Ok(piece) => buf.extend_from_slice(&piece),
                            Err(StreamError::Closed) => {
                                ended = true;
                                break;
                            }
                            Err(StreamError::LastOperationFailed(e)) => {
                                return Err(format!("reading the export failed: {}", e.to_debug_string()));
                            }
                        }
                    }
                    if buf.is_empty() && ended {
                        return Ok(Step::End);
                    }
                    // After the end, the next call finds the stream closed at once.
                    *state = State::Data { download };
                    Ok(Step::Data(buf))
                }
                State::Idle => Ok(Step::End),
                State::Restoring { .. } => Err("next() during a restore".into()),
            }
        })
    }

    fn begin_restore(list: Vec<Param>) -> Result<(), String> {
        let params = params(&list)?;
        STATE.with(|s| *s.borrow_mut() = State::Restoring { params, upload: None, files: 0 });
        Ok(())
    }

    fn restore_item(item: Item) -> Result<(), String> {
        STATE.with(|s| {
            let mut state = s.borrow_mut();
            let State::Restoring { params, upload, files } = &mut *state else {
                return Err("restore-item before begin-restore".into());
            };
            if let Some(done) = upload.take() {
                finish_upload(done, params)?;
            }
            if item.kind != ItemKind::File {
                return Ok(());
            }
            *files += 1;
            if *files > 1 {
                return Err(format!("this handler restores one file; {:?} is a second one", item.path));
            }
            let req = request(&params.restore_method, &params.restore_url, &params.authorization)?;
            let body = req.body().map_err(|()| "the request has no body".to_owned())?;
            let out = body.write().map_err(|()| "the request body cannot be written".to_owned())?;
            let response = outgoing_handler::handle(req, None)
                .map_err(|e| format!("uploading {}: {}", item.path, describe(&e)))?;
            *upload = Some(Upload { out, body, response, path: item.path });
            Ok(())
        })
    }

    fn restore_data(data: Vec<u8>) -> Result<(), String> {
        STATE.with(|s| {
            let state = s.borrow();
            let State::Restoring { upload: Some(up), .. } = &*state else {
                return Err("data without a file to restore it to".into());
            };
            write_all(&up.out, &data).map_err(|e| format!("uploading {}: {e}", up.path))
        })
    }

    fn finish_restore() -> Result<(), String> {
        STATE.with(|s| match std::mem::replace(&mut *s.borrow_mut(), State::Idle) {
            State::Restoring { params, upload, files } => {
                if let Some(up) = upload {
                    finish_upload(up, &params)?;
                }
                if files == 0 {
                    return Err("the snapshot held no file to upload".into());
                }
                Ok(())
            }
            _ => Err("finish-restore before begin-restore".into()),
        })
    }
}

fn write_all(out: &OutputStream, mut data: &[u8]) -> Result<(), String> {
    let failed = |e: StreamError| match e {
        StreamError::Closed => "the server closed the connection".to_owned(),
        StreamError::LastOperationFailed(e) => e.to_debug_string(),
    };
    while !data.is_empty() {
        let mut n = out.check_write().map_err(failed)?;
        while n == 0 {
            out.subscribe().block();
            n = out.check_write().map_err(failed)?;
        }
        let n = (n as usize).min(data.len());
        out.write(&data[..n]).map_err(failed)?;
        data = &data[n..];
    }
    Ok(())
}

fn finish_upload(up: Upload, params: &Params) -> Result<(), String> {
    let Upload { out, body, response, path } = up;
    out.blocking_flush().map_err(|_| format!("uploading {path}: the server stopped reading"))?;
    drop(out);
    OutgoingBody::finish(body, None).map_err(|e| format!("uploading {path}: {}", describe(&e)))?;
    let what = format!("uploading {path} to {}", params.restore_url.authority);
    let resp = wait(&response, &what)?;
    let status = resp.status();
    if !(200..300).contains(&status) {
        return Err(format!("{what}: the server answered {status}"));
    }
    Ok(())
}

export!(SourceHttp);
