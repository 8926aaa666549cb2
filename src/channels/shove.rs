//! `meshnode shove CONFIG 'CONTENT-TYPE' FILE...`: the w-shove client. One file goes as
//! the body of a POST; several go in one multipart/mixed request, streamed from disk.
//! Each file's result is printed; any refusal makes the exit status non-zero.

use crate::core::mediatype::MediaType;
use crate::mesh::fetch::Timeouts;
use crate::mesh::request::{self, Request};
use crate::mesh::roots;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A w-shove configuration file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ShoveConfig {
    pub server_url: String,
    /// `http://PROXY_NAME:PROXY_PORT` when PROXY_ENABLE is true.
    pub proxy: Option<String>,
    /// `user:password` when AUTH_ENABLE is true.
    pub credential: Option<String>,
    /// `CA_FILE`: PEM certificates trusted for https instead of the public roots (a
    /// node with its own or a private CA's certificate).
    pub ca_file: Option<PathBuf>,
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "1" | "on")
}

impl ShoveConfig {
    /// `KEY = VALUE` lines, `#` comments; errors name file:line.
    pub fn parse(text: &str, file: &str) -> Result<ShoveConfig, String> {
        let (mut url, mut proxy_on, mut proxy_name, mut proxy_port) = (None, false, None, None);
        let (mut auth_on, mut credential, mut ca_file) = (false, None, None);
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |e: String| format!("{file}:{}: {e}", i + 1);
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| at("expected KEY = VALUE".into()))?;
            let (k, v) = (k.trim(), v.trim().to_string());
            match k.to_ascii_uppercase().as_str() {
                "SERVER_URL" => url = Some(v),
                "PROXY_ENABLE" => proxy_on = truthy(&v),
                "PROXY_NAME" => proxy_name = Some(v),
                "PROXY_PORT" => {
                    proxy_port = Some(
                        v.parse::<u16>()
                            .map_err(|_| at(format!("PROXY_PORT {v:?} is not a port")))?,
                    )
                }
                "AUTH_ENABLE" => auth_on = truthy(&v),
                "AUTH_CREDENTIAL" => credential = Some(v),
                "CA_FILE" => ca_file = Some(PathBuf::from(v)),
                other => return Err(at(format!("unknown key {other}"))),
            }
        }
        let server_url = url.ok_or_else(|| format!("{file}: no SERVER_URL"))?;
        if !server_url.starts_with("http://") && !server_url.starts_with("https://") {
            return Err(format!(
                "{file}: SERVER_URL {server_url:?} is not http(s)://"
            ));
        }
        let proxy = if proxy_on {
            let name =
                proxy_name.ok_or_else(|| format!("{file}: PROXY_ENABLE without PROXY_NAME"))?;
            Some(format!("http://{name}:{}", proxy_port.unwrap_or(80)))
        } else {
            None
        };
        let credential = if auth_on {
            let c =
                credential.ok_or_else(|| format!("{file}: AUTH_ENABLE without AUTH_CREDENTIAL"))?;
            if !c.contains(':') {
                return Err(format!("{file}: AUTH_CREDENTIAL must be user:password"));
            }
            Some(c)
        } else {
            None
        };
        Ok(ShoveConfig {
            server_url,
            proxy,
            credential,
            ca_file,
        })
    }
}

/// The authorities trusted for https: `CA_FILE`'s only when given, else the node's
/// (Mozilla's and the system's).
fn trusting(ca: Option<&Path>) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    ca.map(|ca| {
        let store = roots::store_of(ca).map_err(|e| format!("CA_FILE {e}"))?;
        Ok(roots::client_config_trusting(store))
    })
    .transpose()
}

/// The Content-Type of one file: the one given, with `fname=` added when absent.
pub fn part_type(given: &MediaType, file: &Path) -> String {
    let mut mt = given.clone();
    if mt.param("fname").is_none() {
        if let Some(n) = file.file_name().and_then(|n| n.to_str()) {
            mt.params.push(("fname".into(), n.to_string()));
        }
    }
    mt.to_string()
}

/// A multipart/mixed body read from the files as it is sent.
struct MultipartBody {
    pieces: Vec<Piece>,
    at: usize,
}

enum Piece {
    Text(io::Cursor<Vec<u8>>),
    File(File),
}

impl Read for MultipartBody {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while let Some(p) = self.pieces.get_mut(self.at) {
            let n = match p {
                Piece::Text(c) => c.read(out)?,
                Piece::File(f) => f.read(out)?,
            };
            if n > 0 || out.is_empty() {
                return Ok(n);
            }
            self.at += 1;
        }
        Ok(0)
    }
}

/// Sends the files; returns how many were refused (or could not be sent).
pub fn run(config: &Path, content_type: &str, files: &[PathBuf]) -> Result<usize, String> {
    let text = std::fs::read_to_string(config).map_err(|e| format!("{}: {e}", config.display()))?;
    let cfg = ShoveConfig::parse(&text, &config.display().to_string())?;
    let given = MediaType::parse(content_type).map_err(|e| format!("{content_type:?}: {e}"))?;
    if given.param("cid").is_none() {
        return Err(format!("{content_type:?}: no cid= (the channel id)"));
    }
    if files.is_empty() {
        return Err("no FILE to shove".into());
    }
    let mut opened = Vec::new();
    for f in files {
        let file = File::open(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let len = file
            .metadata()
            .map_err(|e| format!("{}: {e}", f.display()))?
            .len();
        opened.push((file, len));
    }
    let tls = trusting(cfg.ca_file.as_deref())?;
    let (ctype, length, mut body): (String, u64, Box<dyn Read>) = if opened.len() == 1 {
        let (f, len) = opened.pop().expect("one file");
        (part_type(&given, &files[0]), len, Box::new(f))
    } else {
        let boundary = format!("meshnode-shove-{:x}", (crate::sys::unix_now() * 1e6) as u64);
        let mut pieces = Vec::new();
        let mut length = 0u64;
        for (f, (file, len)) in files.iter().zip(opened) {
            let head = format!(
                "--{boundary}\r\nContent-Type: {}\r\nContent-Length: {len}\r\n\r\n",
                part_type(&given, f)
            );
            length += head.len() as u64 + len + 2;
            pieces.push(Piece::Text(io::Cursor::new(head.into_bytes())));
            pieces.push(Piece::File(file));
            pieces.push(Piece::Text(io::Cursor::new(b"\r\n".to_vec())));
        }
        let end = format!("--{boundary}--\r\n");
        length += end.len() as u64;
        pieces.push(Piece::Text(io::Cursor::new(end.into_bytes())));
        (
            format!("multipart/mixed; boundary=\"{boundary}\""),
            length,
            Box::new(MultipartBody { pieces, at: 0 }),
        )
    };
    let auth = cfg
        .credential
        .as_ref()
        .map(|c| format!("Basic {}", B64.encode(c)));
    let mut headers = vec![
        (
            "User-Agent",
            concat!("meshnode-shove/", env!("CARGO_PKG_VERSION")),
        ),
        ("Content-Type", ctype.as_str()),
    ];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let answer = request::send(Request {
        method: "POST",
        url: &cfg.server_url,
        headers: &headers,
        body: Some((&mut body, length)),
        proxy: cfg.proxy.as_deref(),
        tls,
        // the taker answers once every file is stored
        timeouts: Timeouts {
            connect: Duration::from_secs(30),
            response: Duration::from_secs(300),
            per_read: Duration::from_secs(300),
            min_rate: 0,
            ..Timeouts::default()
        },
    })
    .map_err(|e| format!("{}: {e}", cfg.server_url))?;
    let status = answer.status;
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    let results = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("results").and_then(|r| r.as_array()).cloned());
    let Some(results) = results else {
        // not a taker's answer (a proxy's, an authentication failure...)
        let why = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| text.lines().next().unwrap_or("").to_string());
        for f in files {
            eprintln!("{}: refused: HTTP {status} {why}", f.display());
        }
        return Ok(files.len());
    };
    let mut refused = files.len().saturating_sub(results.len());
    for (i, f) in files.iter().enumerate() {
        let Some(r) = results.get(i) else {
            eprintln!(
                "{}: no answer for it (the upload stopped before)",
                f.display()
            );
            continue;
        };
        let s = r.get("status").and_then(|s| s.as_u64()).unwrap_or(0);
        let cid = r.get("cid").and_then(|c| c.as_str()).unwrap_or("");
        if s == 201 {
            let oid = r.get("oid").and_then(|o| o.as_str()).unwrap_or("");
            println!("{}: published into {cid} as {oid}", f.display());
        } else {
            let why = r.get("error").and_then(|e| e.as_str()).unwrap_or("");
            eprintln!("{}: refused: HTTP {s} {why}", f.display());
            refused += 1;
        }
    }
    Ok(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_w_shove_configs() {
        let c = ShoveConfig::parse(
            "# HTTP uploader's configuration\nSERVER_URL = http://metcast.host/taker\nPROXY_ENABLE = FALSE\nPROXY_NAME = proxy.host\nPROXY_PORT = 80\n",
            "w",
        )
        .unwrap();
        assert_eq!(c.server_url, "http://metcast.host/taker");
        assert_eq!((c.proxy, c.credential), (None, None));
        let c = ShoveConfig::parse(
            "SERVER_URL = http://h/rest/taker\nPROXY_ENABLE = true\nPROXY_NAME = p\nPROXY_PORT = 3128\nAUTH_ENABLE = true\nAUTH_CREDENTIAL = dave:pw=1\n",
            "w",
        )
        .unwrap();
        assert_eq!(c.proxy.as_deref(), Some("http://p:3128"));
        assert_eq!(c.credential.as_deref(), Some("dave:pw=1"));
        for (text, want) in [
            ("PROXY_ENABLE = no\n", "w: no SERVER_URL"),
            ("SERVER_URL http://x\n", "w:1: expected KEY = VALUE"),
            ("SERVER_URL = ftp://x\n", "w: SERVER_URL"),
            (
                "SERVER_URL = http://x\nAUTH_ENABLE = TRUE\n",
                "w: AUTH_ENABLE without",
            ),
            (
                "SERVER_URL = http://x\nCOLOUR = red\n",
                "w:2: unknown key COLOUR",
            ),
        ] {
            let e = ShoveConfig::parse(text, "w").unwrap_err();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn parts_get_their_file_name() {
        let mt = MediaType::parse("text/plain; cid=MEMO; author=Dave").unwrap();
        assert_eq!(
            part_type(&mt, Path::new("/tmp/memo1.txt")),
            "text/plain; cid=MEMO; author=Dave; fname=memo1.txt"
        );
        let mt = MediaType::parse("text/plain; cid=MEMO; fname=given").unwrap();
        assert_eq!(
            part_type(&mt, Path::new("/tmp/x")),
            "text/plain; cid=MEMO; fname=given"
        );
    }
}
