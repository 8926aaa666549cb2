//! What each verdict does to the tree, then its announcement: store a new file (inline
//! content or a download), copy the same bytes from another name, apply a file
//! operation, announce a stored file with this node's baseUrl.

use super::engine::download::Job;
use super::flow::{Flow, Outcome};
use super::mqtt::Poster;
use super::workers;
use crate::core::announce::Held;
use crate::core::decide::Op;
use crate::core::integrity::{Digest, Method};
use crate::core::mediatype::MediaType;
use crate::core::message::{self, Format, Message};
use crate::core::relpath;
use crate::store::sidecar;
use crate::store::{is_local_trouble, CommitError};
use std::io::Write;
use std::sync::atomic::Ordering;

impl Flow {
    /// A file just stored: the next announcement of the same bytes costs no disk read,
    /// and the same bytes under another name are copied rather than downloaded.
    pub(super) fn remember_stored(
        &mut self,
        rel: &str,
        method: Method,
        digest: &Digest,
        size: u64,
    ) {
        self.recent.insert(rel, digest.as_bytes());
        self.same_bytes
            .insert(method.name(), digest.as_bytes(), rel);
        log::debug!(
            "{rel}: stored ({size} bytes, {} {})",
            method.name(),
            digest.to_base64()
        );
    }

    /// Stores a new file (inline content or a download), then announces it.
    pub(super) fn store_file(
        &mut self,
        msg: &Message<'_>,
        topic: &[u8],
        rel: &str,
        method: Method,
        expected: Option<&Digest>,
        poster: Option<&Poster>,
    ) -> Outcome {
        // a channel product: its attributes first, so its body never shows without them
        let product = sidecar::split_product_rel(rel).map(|(_, oid)| oid.to_string());
        if let Some(oid) = &product {
            self.write_product_meta(msg, rel, oid);
        }
        let stored = match &msg.content {
            Some(content) => match self.store_inline(rel, content, method, expected, msg) {
                Ok(s) => s,
                Err(e) => {
                    if product.is_some() {
                        sidecar::remove_meta(&self.store.path(rel));
                    }
                    return Outcome::Stalled(rel.to_string(), e.to_string());
                }
            },
            None => {
                let mut url = String::with_capacity(128);
                match &msg.url {
                    Some(whole) => url.push_str(whole),
                    None => {
                        let path = msg.ret_path.as_deref().unwrap_or(rel);
                        relpath::join_url(&mut url, &msg.base_url, path);
                    }
                }
                let origin = workers::origin(&url);
                let origin = self
                    .engine
                    .window
                    .origin_name(origin)
                    .unwrap_or_else(|| origin.into());
                return Outcome::Fetch(Job {
                    slot: 0, // set by the caller
                    rel: rel.into(),
                    origin,
                    url,
                    method,
                    expected: expected.cloned(),
                    size: msg.size,
                    batch: 0, // set by the window
                    pub_time: crate::core::time::parse_time(&msg.pub_time),
                });
            }
        };
        if stored.is_none() && product.is_some() {
            sidecar::remove_meta(&self.store.path(rel));
        }
        let Some((method, digest, size)) = stored else {
            return if self.stop.load(Ordering::Relaxed) {
                Outcome::Abandoned
            } else {
                Outcome::Done(0)
            };
        };
        self.remember_stored(rel, method, &digest, size);
        self.announce_stored(msg, topic, rel, method, digest, size, poster)
    }

    /// Stores `rel` from the same bytes here under `from`, verified, and announces it.
    /// `None`: not copied (logged), to be downloaded instead.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn copy_local(
        &mut self,
        msg: &Message<'_>,
        topic: &[u8],
        rel: &str,
        from: &str,
        method: Method,
        expected: &Digest,
        poster: Option<&Poster>,
    ) -> Option<Outcome> {
        // a channel product has attributes beside it: those come with a download
        if sidecar::split_product_rel(rel).is_some() {
            return None;
        }
        let copied = std::fs::File::open(self.store.path(from))
            .map_err(CommitError::Io)
            .and_then(|mut src| {
                let mut t = self
                    .store
                    .begin(rel, method, self.cfg.file_max)
                    .map_err(CommitError::Io)?;
                t.set_modified(crate::core::time::parse_time(&msg.pub_time));
                std::io::copy(&mut src, &mut t).map_err(CommitError::Io)?;
                Ok(t)
            })
            .and_then(|t| {
                let size = t.size();
                self.store.commit(t, rel, Some(expected)).map(|c| (c, size))
            });
        let ((method, digest), size) = match copied {
            Ok(c) => c,
            Err(e) => {
                log::warn!("{rel}: not copied from {from} ({e}): downloaded instead");
                return None;
            }
        };
        self.stats.copies += 1;
        self.recent.insert(rel, digest.as_bytes());
        self.same_bytes
            .insert(method.name(), digest.as_bytes(), rel);
        log::debug!("{rel}: stored ({size} bytes), the same bytes as {from}");
        Some(self.announce_stored(msg, topic, rel, method, digest, size, poster))
    }

    /// A new message id (WIS2 gives every message its own); empty for v03.
    pub(super) fn new_id(&self) -> String {
        match self.cfg.format {
            Format::Wis2 => crate::sys::uuid_v4(),
            _ => String::new(),
        }
    }

    /// The directories of an announcement's topic: in WIS2, the levels of the incoming
    /// topic after `a/wis2/` when it has them (the WIS2 hierarchy kept); otherwise
    /// those of the relPath.
    pub(super) fn topic_dirs<'t>(
        &self,
        topic: &'t [u8],
        rel: &'t str,
    ) -> std::borrow::Cow<'t, str> {
        if self.cfg.format == Format::Wis2 {
            if let Some(tail) = crate::core::topic::wis2_tail(topic) {
                return tail;
            }
        }
        std::borrow::Cow::Borrowed(relpath::dirname(rel))
    }

    pub(super) fn file_op(
        &mut self,
        msg: &Message<'_>,
        topic: &[u8],
        rel: &str,
        op: Op,
        redelivered: bool,
        poster: Option<&Poster>,
    ) -> Outcome {
        let (result, announce) = match op {
            Op::Remove => {
                self.recent.forget(rel);
                if let Some(t) = crate::core::time::parse_time(&msg.pub_time) {
                    let key = super::recent::fingerprint(rel.as_bytes());
                    self.removed.insert_fingerprints(key, t.to_bits());
                }
                let superseded = self.retry.supersede(rel);
                if superseded > 0 {
                    log::info!("{rel}: removed: its {superseded} queued retries are dropped");
                }
                let removed = self.store.remove(rel);
                if sidecar::split_product_rel(rel).is_some() {
                    sidecar::remove_meta(&self.store.path(rel));
                }
                (removed, message::FILEOP_REMOVE)
            }
            Op::Mkdir => (self.store.mkdir(rel), message::FILEOP_MKDIR),
            Op::Rmdir => (self.store.rmdir(rel), message::FILEOP_RMDIR),
        };
        // a redelivered message may have been applied before its announcement was
        // acknowledged: announce again rather than lose it, unless that announcement
        // is known made (journaled, or awaiting its ack: another upstream's copy)
        let made = || {
            let key = super::announced::Announced::key(rel, "");
            self.announced.contains(rel, "") || self.engine.ledger.holds(key)
        };
        match result {
            Ok(changed) if changed || (redelivered && !made()) => {
                self.stats.removes += u64::from(op == Op::Remove && changed);
                log::debug!("{rel}: applied {announce}");
                self.out.clear();
                let id = self.new_id();
                let written = self.cfg.voice(&id).file_op(
                    &mut self.out,
                    rel,
                    &msg.pub_time,
                    announce,
                    Some(msg),
                );
                if !written {
                    log::debug!("{rel}: {announce} has no WIS2 form: not announced");
                    return Outcome::Done(0);
                }
                let dirs = self.topic_dirs(topic, rel);
                self.announce(rel, &dirs, "", poster)
            }
            // nothing to do: the mesh already did it here, so the ripple stops here
            Ok(_) => {
                self.stats.duplicates += 1;
                Outcome::Done(0)
            }
            Err(e) => {
                log::error!("{rel}: cannot apply {announce}: {e}");
                self.stats.failures += 1;
                Outcome::Done(0)
            }
        }
    }

    /// Announces the local copy of `rel` with this node's baseUrl.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn announce_stored(
        &mut self,
        msg: &Message<'_>,
        topic: &[u8],
        rel: &str,
        method: Method,
        digest: Digest,
        size: u64,
        poster: Option<&Poster>,
    ) -> Outcome {
        // the journal and the exchange split know the file by the value announced to us
        let key = digest.to_base64();
        let computed;
        let (method, value) = if self.cfg.format.announces(method) {
            (method, key.as_str())
        } else {
            // md5 in, WIS2 out (which forbids md5); sha256 in, v03 out: the format's
            // own method, computed from the stored file (just written: in the page cache)
            let m = self.cfg.format.default_method();
            match self.store.local_digest(rel, m) {
                Ok(Some(d)) => {
                    computed = d.to_base64();
                    (m, computed.as_str())
                }
                Ok(None) | Err(_) => {
                    log::error!("{rel}: cannot compute its {} to announce it", m.name());
                    self.stats.failures += 1;
                    return Outcome::Done(0);
                }
            }
        };
        let inline_data = if self.cfg.inline && size as usize <= self.cfg.inline_max {
            std::fs::read(self.store.path(rel)).ok()
        } else {
            None
        };
        let held = Held {
            rel,
            pub_time: &msg.pub_time,
            method,
            value,
            size,
            inline: inline_data.as_deref(),
        };
        self.out.clear();
        let id = self.new_id();
        if let Err(why) = self.cfg.voice(&id).file(&mut self.out, &held, Some(msg)) {
            log::warn!("{rel}: stored, not announced: {why}");
            self.stats.rejected += 1;
            return Outcome::Done(0);
        }
        let dirs = self.topic_dirs(topic, rel);
        self.announce(rel, &dirs, &key, poster)
    }

    /// Writes the sidecar of channel product `rel` from the message's `contentType`,
    /// `source` and pubTime.
    pub(super) fn write_product_meta(&mut self, msg: &Message<'_>, rel: &str, oid: &str) {
        let field = |name: &str| {
            msg.extra
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| serde_json::from_str::<String>(v.get()).ok())
        };
        let (cid, _) = sidecar::split_product_rel(rel).expect("checked by the caller");
        // served as a header later: only a well-formed media type (no CR/LF), with the
        // cid and oid of the relPath whatever the message says
        // a WIS2 message says the media type as its link's type
        let link_type = || {
            let w = msg.wis2.as_ref()?;
            w.link_type.as_deref().map(str::to_string)
        };
        let mt = match field("contentType")
            .or_else(link_type)
            .map(|c| MediaType::parse(&c))
        {
            Some(Ok(mt)) => mt,
            Some(Err(e)) => {
                log::warn!("{rel}: contentType refused ({e}); served as application/octet-stream");
                MediaType::parse("application/octet-stream").expect("a valid media type")
            }
            None => MediaType::parse("application/octet-stream").expect("a valid media type"),
        };
        let content_type = match sidecar::product_media_type(mt, cid, oid) {
            Ok(written) => written,
            Err(e) => {
                log::warn!("{rel}: contentType refused ({e}); served as application/octet-stream");
                sidecar::fallback_meta(cid, oid).content_type
            }
        };
        let meta = sidecar::Meta {
            content_type,
            source: field("source").unwrap_or_default(),
            // the product listing speaks v03's pubTime
            pub_time: crate::core::time::rfc3339_to_pub_time(&msg.pub_time)
                .unwrap_or_else(|| msg.pub_time.to_string()),
        };
        let dir = self.store.path(relpath::dirname(rel));
        // through the store: its directories are checked for symlinks
        let written = self
            .store
            .mkdir(relpath::dirname(rel))
            .and_then(|_| sidecar::write_meta(&dir, oid, &meta));
        if let Err(e) = written {
            log::warn!("{rel}: product attributes not kept: {e}");
        }
    }

    pub(super) fn store_inline(
        &mut self,
        rel: &str,
        content: &message::Content<'_>,
        method: Method,
        expected: Option<&Digest>,
        msg: &Message<'_>,
    ) -> Result<Option<(Method, Digest, u64)>, std::io::Error> {
        let data = match content.decode() {
            Ok(d) => d,
            Err(e) => {
                log::error!("{rel}: inline content refused: {e}");
                self.stats.rejected += 1;
                return Ok(None);
            }
        };
        let result = self
            .store
            .begin(rel, method, self.cfg.file_max)
            .and_then(|mut t| {
                t.set_modified(crate::core::time::parse_time(&msg.pub_time));
                t.write_all(&data).map(|()| t)
            })
            .map_err(CommitError::Io)
            .and_then(|t| self.store.commit(t, rel, expected));
        match result {
            Ok((m, d)) => {
                self.stats.inline_writes += 1;
                Ok(Some((m, d, data.len() as u64)))
            }
            Err(CommitError::Io(e)) if is_local_trouble(&e) => Err(e),
            Err(e) => {
                if matches!(e, CommitError::Mismatch { .. }) {
                    self.stats.mismatches += 1;
                }
                log::error!("{rel}: inline content not stored: {e}");
                self.stats.failures += 1;
                Ok(None)
            }
        }
    }
}
