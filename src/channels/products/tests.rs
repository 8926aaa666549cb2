use super::*;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("meshnode-ch-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn memo(capacity: usize) -> ChannelDef {
    let mut d = ChannelDef::new("MEMO").unwrap();
    d.capacity = capacity;
    d
}

#[test]
fn oids_grow_and_survive_a_restart() {
    let d = scratch("oid");
    let c = Channels::open(vec![memo(5)], &d, "pi1", "user.x", 1 << 20).unwrap();
    let a = c.next_oid(1000.0);
    let b = c.next_oid(999.0); // the clock stepped back
    assert!(b > a, "{a} {b}");
    let mt = MediaType::parse("text/plain; cid=MEMO").unwrap();
    let p = c
        .publish(0, None, mt, &mut &b"x"[..], 2000.0, &mut [0; 64])
        .unwrap();
    drop(c);
    let c = Channels::open(vec![memo(5)], &d, "pi1", "user.x", 1 << 20).unwrap();
    assert!(c.next_oid(1.0) > p.oid);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn capacity_evicts_the_oldest_and_keeps_attributes() {
    let d = scratch("cap");
    let c = Channels::open(vec![memo(2)], &d, "n", "user.x", 1 << 20).unwrap();
    let mut oids = Vec::new();
    for i in 0..3 {
        let mt = MediaType::parse(&format!(
            "text/plain; cid=MEMO;fname=m{i}.txt;topic=\"How to publish\";oid=forged"
        ))
        .unwrap();
        let body = format!("product {i}");
        let p = c
            .publish(
                0,
                Some("dave"),
                mt,
                &mut body.as_bytes(),
                100.0 + i as f64,
                &mut [0; 7],
            )
            .unwrap();
        assert_eq!(p.evicted.len(), usize::from(i == 2));
        oids.push(p.oid);
    }
    let list = c.list(&c.defs[0]).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].oid, oids[1]);
    assert_eq!(
        list[1].meta.content_type,
        format!(
            "text/plain; cid=MEMO; oid={}; fname=m2.txt; topic=\"How to publish\"",
            oids[2]
        )
    );
    assert_eq!((list[1].meta.source.as_str(), list[1].size), ("dave", 9));
    assert!(c.open_product(&c.defs[0], &oids[0]).is_none(), "evicted");
    let (_, mut f) = c.open_product(&c.defs[0], &oids[2]).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "product 2");
    assert!(c.delete(0, &oids[2]).unwrap());
    assert!(!c.delete(0, &oids[2]).unwrap());
    assert!(!d
        .join("metcast/MEMO")
        .join(crate::store::sidecar::meta_name(&oids[2]))
        .exists());
    assert!(!c.delete(0, "../../x").unwrap());
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn oversize_leaves_nothing() {
    let d = scratch("big");
    let c = Channels::open(vec![memo(2)], &d, "n", "user.x", 10).unwrap();
    let mt = MediaType::parse("text/plain; cid=MEMO").unwrap();
    let e = c
        .publish(0, None, mt, &mut &[7u8; 11][..], 1.0, &mut [0; 4])
        .unwrap_err();
    assert_eq!(e.reason, Reason::TooLarge);
    assert_eq!(fs::read_dir(d.join("metcast/MEMO")).unwrap().count(), 0);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_content_type_other_nodes_would_refuse_with_the_cid_and_oid_is_refused() {
    // 32 parameters read here; with the oid added, 33: every reader would refuse the
    // announced contentType
    let d = scratch("ctype");
    let c = Channels::open(vec![memo(2)], &d, "n", "user.x", 1 << 20).unwrap();
    let params: String = (0..31).map(|i| format!("; p{i}=v")).collect();
    let mt = MediaType::parse(&format!("text/plain; cid=MEMO{params}")).unwrap();
    assert_eq!(mt.params.len(), 32);
    let e = c
        .publish(0, None, mt, &mut &b"x"[..], 1.0, &mut [0; 64])
        .unwrap_err();
    assert_eq!(e.reason, Reason::BadRequest);
    assert!(
        e.why
            .contains("more than 32 parameters with the cid and oid"),
        "{}",
        e.why
    );
    assert_eq!(fs::read_dir(d.join("metcast/MEMO")).unwrap().count(), 0);
    // one parameter fewer: stored, and its type reads again
    let params: String = (0..30).map(|i| format!("; p{i}=v")).collect();
    let mt = MediaType::parse(&format!("text/plain; cid=MEMO{params}")).unwrap();
    c.publish(0, None, mt, &mut &b"x"[..], 2.0, &mut [0; 64])
        .unwrap();
    fs::remove_dir_all(&d).unwrap();
}

/// A body that, half-way, lets another upload into the same channel finish first.
struct Overtaken<'c> {
    c: &'c Channels,
    body: &'static [u8],
    overtaken: Option<String>,
}

impl Read for Overtaken<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.overtaken.is_none() {
            let mt = MediaType::parse("text/plain; cid=LATEST").unwrap();
            let quick = self
                .c
                .publish(0, None, mt, &mut &b"quick"[..], 2.0, &mut [0; 8]);
            self.overtaken = Some(quick.unwrap().oid);
        }
        let n = self.body.len().min(out.len());
        out[..n].copy_from_slice(&self.body[..n]);
        self.body = &self.body[n..];
        Ok(n)
    }
}

#[test]
fn the_upload_accepted_last_is_the_one_kept() {
    let d = scratch("order");
    let mut latest = ChannelDef::new("LATEST").unwrap();
    latest.capacity = 1;
    let c = Channels::open(vec![latest], &d, "n", "user.x", 1 << 20).unwrap();
    let mut slow = Overtaken {
        c: &c,
        body: b"slow, begun first",
        overtaken: None,
    };
    let mt = MediaType::parse("text/plain; cid=LATEST").unwrap();
    // begun first (an earlier clock), accepted last
    let p = c.publish(0, None, mt, &mut slow, 1.0, &mut [0; 4]).unwrap();
    let quick = slow.overtaken.unwrap();
    assert!(p.oid > quick, "{} after {quick}", p.oid);
    assert_eq!(p.evicted, vec![product_rel("LATEST", &quick)]);
    let list = c.list(&c.defs[0]).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].oid, p.oid, "the 201's product is the one kept");
    assert!(list[0].time >= oid_time(&quick).unwrap());
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn feeds_deposit_whole_files_without_clobbering() {
    let d = scratch("feed");
    let mut f = ChannelDef::new("21").unwrap();
    f.apply("kind", "feed").unwrap();
    f.apply("feed-dir", d.join("obs").to_str().unwrap())
        .unwrap();
    let c = Channels::open(vec![f.clone()], &d, "n", "user.x", 1 << 20).unwrap();
    let mt =
        MediaType::parse("application/octet-stream; cid=21; fname=\"../x/MTR50.SRVR\"").unwrap();
    let (_, a, _) = c
        .deposit(0, &mt, &mut &b"one"[..], Some(3), 1.0, &mut [0; 8])
        .unwrap();
    let (_, b, _) = c
        .deposit(0, &mt, &mut &b"two"[..], None, 2.0, &mut [0; 8])
        .unwrap();
    assert_eq!(a, "MTR50.SRVR");
    // the OID before the extension: a decoder watching *.SRVR sees it too
    assert!(
        b.starts_with("MTR50.") && b.ends_with(".SRVR") && b != a,
        "{b}"
    );
    assert_eq!(fs::read(d.join("obs").join(&a)).unwrap(), b"one");
    assert_eq!(fs::read(d.join("obs").join(&b)).unwrap(), b"two");
    // partial uploads wait beside the watched directory, not in it
    assert_eq!(fs::read_dir(d.join(".obs.incoming")).unwrap().count(), 0);
    assert!(!d.join("obs/.incoming").exists());
    // a disk that cannot have this much free space
    let Kind::Feed { min_free, .. } = &mut f.kind else {
        unreachable!()
    };
    *min_free = u64::MAX / 2;
    let c = Channels::open(vec![f], &d, "n", "user.x", 1 << 20).unwrap();
    let e = c
        .deposit(0, &mt, &mut &b"3"[..], Some(1), 3.0, &mut [0; 8])
        .unwrap_err();
    assert_eq!(e.reason, Reason::DiskFull, "{e:?}");
    fs::remove_dir_all(&d).unwrap();
}
