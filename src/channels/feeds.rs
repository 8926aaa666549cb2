//! Feed (virtual) channels: a product is deposited as a file into a directory of its
//! own (a decoder's input), never in the tree, never listed.

use super::products::{copy_limited, Channels};
use super::{Kind, Reason, Refusal};
use crate::core::mediatype::MediaType;
use crate::store::sidecar::valid_id;
use crate::store::temp_name;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

impl Channels {
    /// Deposits one product into feed channel number `i`; returns the file name given.
    /// `expected` (the Content-Length, when known) is checked against the free space
    /// before anything is read.
    pub fn deposit(
        &self,
        i: usize,
        mt: &MediaType,
        body: &mut dyn Read,
        expected: Option<u64>,
        now: f64,
        buf: &mut [u8],
    ) -> Result<(String, String, u64), Refusal> {
        let def = &self.defs[i];
        let Kind::Feed {
            dir,
            incoming,
            min_free,
        } = &def.kind
        else {
            return Err(Refusal::new(Reason::Storage, "not a feed channel"));
        };
        check_free(dir, *min_free, expected.unwrap_or(0))?;
        // set by `Channels::open`
        let inc = incoming.clone().unwrap_or_else(|| dir.join(".incoming"));
        let tmp = inc.join(temp_name());
        let mut out = TempGuard(Some(tmp.clone()));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        let size = copy_limited(body, &mut f, self.max_product, buf)?;
        f.sync_all()?;
        drop(f);
        check_free(dir, *min_free, 0)?;
        let oid = self.next_oid(now);
        let name = match mt.param("fname").map(base_name) {
            Some(n) if valid_id(n) => n.to_string(),
            _ => oid.clone(),
        };
        // never replace a file the decoder has not taken yet: link fails if the name
        // is taken, then the OID makes it unique
        let mut target = dir.join(&name);
        let mut given = name.clone();
        for attempt in 0..2 {
            match fs::hard_link(&tmp, &target) {
                Ok(()) => {
                    let _ = fs::remove_file(&tmp);
                    out.0 = None;
                    return Ok((oid, given, size));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt == 0 => {
                    given = with_oid(&name, &oid);
                    target = dir.join(&given);
                }
                // a filesystem without hard links: rename (checked just above)
                Err(_) if !target.exists() => {
                    fs::rename(&tmp, &target)?;
                    out.0 = None;
                    return Ok((oid, given, size));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Refusal::new(Reason::Storage, format!("{given} exists")))
    }
}

/// Removes a partial upload on every way out but success.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

/// `name` made unique with `oid`, its extension kept last (`MTR50.SRVR` ->
/// `MTR50.<oid>.SRVR`), so a decoder watching `*.SRVR` still sees it.
fn with_oid(name: &str, oid: &str) -> String {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => format!("{stem}.{oid}.{ext}"),
        _ => format!("{name}.{oid}"),
    }
}

fn base_name(s: &str) -> &str {
    s.rsplit(['/', '\\']).next().unwrap_or(s)
}

pub fn check_free(dir: &Path, min_free: u64, coming: u64) -> Result<(), Refusal> {
    if min_free == 0 {
        return Ok(());
    }
    let st = rustix::fs::statvfs(dir)
        .map_err(|e| Refusal::new(Reason::Storage, format!("statvfs: {e}")))?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    if free < min_free.saturating_add(coming) {
        return Err(Refusal::new(
            Reason::DiskFull,
            format!("disk too full: {free} bytes free, {coming} coming, min-free {min_free}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_name_keeps_its_extension_last() {
        assert_eq!(with_oid("MTR50.SRVR", "17-n"), "MTR50.17-n.SRVR");
        assert_eq!(with_oid("a.b.grib2", "17-n"), "a.b.17-n.grib2");
        assert_eq!(with_oid("GRIB1", "17-n"), "GRIB1.17-n");
        assert_eq!(with_oid("trailing.", "17-n"), "trailing..17-n");
    }
}
