//! The retry queue's rules on a real file: it survives restarts, cuts a torn record,
//! backs off, is superseded by removals, bounded and compacted.

use super::*;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("meshnode-retry-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

fn take(q: &mut RetryQueue) -> Option<Taken> {
    q.take_due(Instant::now() + MAX_BACKOFF * 2, |_| true)
        .unwrap()
}

#[test]
fn entries_survive_a_restart_and_come_freshest_first() {
    let dir = scratch("restart");
    {
        let mut q = RetryQueue::open(&dir, 100, Duration::from_secs(3600)).unwrap();
        q.push(b"t/a", b"{\"a\":1}", "http://a:80", "r/a b", 1000)
            .unwrap();
        q.push(b"t/b", b"{\"b\":2}", "http://b:80", "r/1", 1001)
            .unwrap();
        q.push(b"t/c", b"{\"c\":3}", "http://a:80", "r/1", 1002)
            .unwrap();
        q.sync().unwrap();
        let c = take(&mut q).unwrap();
        assert_eq!(&c.payload[..], b"{\"c\":3}");
        q.remove(c.id);
        // not synced, as after a SIGKILL
    }
    let mut q = RetryQueue::open(&dir, 100, Duration::from_secs(3600)).unwrap();
    assert_eq!(q.len(), 2);
    let b = take(&mut q).unwrap();
    assert_eq!(
        (&b.topic[..], &b.payload[..]),
        (&b"t/b"[..], &b"{\"b\":2}"[..])
    );
    assert!(b.reloaded, "taken up from the last run");
    let a = take(&mut q).unwrap();
    assert_eq!(&a.payload[..], b"{\"a\":1}");
    assert_eq!(
        q.drop_entry(a.id, 1010).unwrap().rel,
        "r/a b",
        "a relPath with a space"
    );
    assert!(take(&mut q).is_none(), "both busy");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_torn_record_is_cut_off_and_the_rest_kept() {
    let dir = scratch("torn");
    {
        let mut q = RetryQueue::open(&dir, 100, Duration::from_secs(3600)).unwrap();
        q.push(b"t", b"whole", "http://a", "r/1", 5).unwrap();
        q.sync().unwrap();
    }
    let mut f = OpenOptions::new().append(true).open(dir.join(LOG)).unwrap();
    f.write_all(b"A 9 6 1 100 http://a r/9\ntpartial").unwrap();
    drop(f);
    let mut q = RetryQueue::open(&dir, 100, Duration::from_secs(3600)).unwrap();
    assert_eq!(q.len(), 1);
    q.push(b"u", b"after", "http://a", "r/1", 7).unwrap();
    drop(q);
    let mut q = RetryQueue::open(&dir, 100, Duration::from_secs(3600)).unwrap();
    let got: Vec<Bytes> = std::iter::from_fn(|| take(&mut q).map(|t| t.payload)).collect();
    assert_eq!(got, vec![Bytes::from("after"), Bytes::from("whole")]);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn backoff_doubles_and_servers_can_be_skipped() {
    let dir = scratch("backoff");
    let mut q = RetryQueue::open(&dir, 100, Duration::from_secs(3600)).unwrap();
    q.push(b"t", b"m", "http://down", "r/1", 5).unwrap();
    let now = Instant::now();
    assert!(q.take_due(now, |_| true).unwrap().is_none(), "not due yet");
    let later = now + FIRST_BACKOFF;
    assert!(q.take_due(later, |o| o != "http://down").unwrap().is_none());
    let t = q.take_due(later, |_| true).unwrap().unwrap();
    q.later(t.id, None);
    q.take_due(Instant::now() + FIRST_BACKOFF, |_| true)
        .unwrap()
        .unwrap();
    q.later(t.id, None);
    // second failure: twice the first pause
    assert!(q
        .take_due(Instant::now() + FIRST_BACKOFF, |_| true)
        .unwrap()
        .is_none());
    q.wake("http://down");
    assert!(q.take_due(Instant::now(), |_| true).unwrap().is_some());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_removal_supersedes_the_idle_entries_of_its_file_and_not_a_busy_one() {
    let d = scratch("supersede");
    let mut q = RetryQueue::open(&d, 100, Duration::from_secs(3600)).unwrap();
    let (a, _) = q.push(b"t", b"p1", "http://h:1", "x/a.txt", 1).unwrap();
    let (b, _) = q.push(b"t", b"p2", "http://h:1", "x/a.txt", 2).unwrap();
    let (c, _) = q.push(b"t", b"p3", "http://h:1", "x/c.txt", 3).unwrap();
    q.set_busy(b);
    assert_eq!(q.supersede("x/a.txt"), 1);
    assert_eq!(q.len(), 2);
    assert!(q.origin(a).is_none() && q.origin(b).is_some() && q.origin(c).is_some());
    // durable: not there after a restart either
    q.sync().unwrap();
    drop(q);
    let q = RetryQueue::open(&d, 100, Duration::from_secs(3600)).unwrap();
    assert_eq!(q.len(), 2);
    assert!(q.origin(a).is_none());
}

#[test]
fn bounded_by_max_and_ttl() {
    let dir = scratch("bounds");
    let mut q = RetryQueue::open(&dir, 2, Duration::from_secs(60)).unwrap();
    assert_eq!(
        q.push(b"t", b"1", "http://a", "r/old", 100).unwrap().1,
        None
    );
    assert_eq!(q.push(b"t", b"2", "http://b", "r/1", 110).unwrap().1, None);
    let out = q.push(b"t", b"3", "http://c", "r/1", 120).unwrap().1;
    assert_eq!(
        out,
        Some(Dropped {
            rel: "r/old".into(),
            origin: "http://a".into(),
            age: 20
        }),
        "the oldest gives way"
    );
    assert_eq!(q.len(), 2);
    assert_eq!(q.expire(175).len(), 1, "the one queued at 110 is 65 s old");
    assert!(q.is_expired(2, 180));
    assert!(!q.is_expired(2, 179));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_log_is_rewritten_when_mostly_dead() {
    let dir = scratch("compact");
    let mut q = RetryQueue::open(&dir, 10_000, Duration::from_secs(3600)).unwrap();
    q.push(b"keep", b"kept", "http://a", "r/1", 1).unwrap();
    for i in 0..(COMPACT_SLACK + 10) {
        let (id, _) = q
            .push(b"t", format!("{i}").as_bytes(), "http://a", "r/1", 2)
            .unwrap();
        q.remove(id);
    }
    let size = fs::metadata(dir.join(LOG)).unwrap().len();
    assert!(size < 2000, "log of {size} bytes after compaction");
    drop(q);
    let mut q = RetryQueue::open(&dir, 10_000, Duration::from_secs(3600)).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(&take(&mut q).unwrap().payload[..], b"kept");
    let _ = fs::remove_dir_all(&dir);
}
