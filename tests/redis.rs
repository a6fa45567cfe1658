//! Swap areas on real Redis servers: `redis-server` (Debian's package)
//! started by each test on free loopback ports, with no persistence, and
//! killed when the test ends, also on failure (`Drop`). A single server, a
//! 3-node cluster made by `redis-cli --cluster create`, a server killed or
//! stopped mid-run, FLUSHALL, a changed key, a small `maxmemory`, two caches
//! on one server. Without `redis-server` on the PATH the tests fail: CI
//! installs it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use zswap_rs::backing::{BackingStore, RedisStore};
use zswap_rs::{Config, ErrorKind, LoadSource, RedisOptions, StoreOutcome, Zswap};

const PAGE: usize = 4096;

/// A port nobody listens on now (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of this test, killed on drop.
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
    reaped: bool,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        Self::start_on(free_port(), extra)
    }

    fn start_on(port: u16, extra: &[&str]) -> Server {
        let dir =
            std::env::temp_dir().join(format!("zswap-rs-redis-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH (apt-get install redis-server)");
        let s = Server {
            child,
            port,
            dir,
            reaped: false,
        };
        for _ in 0..200 {
            if s.conn().is_some() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server on port {port} did not answer in 5 s");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn conn(&self) -> Option<redis::Connection> {
        let c = redis::Client::open(self.url()).ok()?;
        let mut c = c.get_connection_with_timeout(Duration::from_secs(1)).ok()?;
        redis::cmd("PING").query::<String>(&mut c).ok()?;
        Some(c)
    }

    fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut c = self.conn().expect("server up");
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut c).unwrap()
    }

    fn dbsize(&self) -> u64 {
        self.cmd(&["DBSIZE"])
    }

    fn kill(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.reaped = true;
        }
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) with the pid of a child this test started and
        // has not reaped.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as libc::pid_t, sig) },
            0
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL ends a server a failed test left stopped, too.
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A page that compresses like program data and says which it is.
fn page(tag: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(PAGE);
    let mut i = 0u64;
    while p.len() < PAGE {
        p.extend_from_slice(format!("[page {tag} word {i}]").as_bytes());
        i += 1;
    }
    p.truncate(PAGE);
    p
}

fn noise(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..PAGE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn cache(max_pool_bytes: u64) -> Zswap {
    Zswap::new(Config {
        max_pool_bytes: Some(max_pool_bytes),
        ..Config::default()
    })
    .unwrap()
}

fn quick() -> RedisOptions {
    RedisOptions {
        connect_timeout: Duration::from_millis(500),
        io_timeout: Duration::from_millis(500),
    }
}

#[test]
fn pages_go_to_the_server_and_swapoff_deletes_them() {
    let s = Server::start(&[]);
    let z = cache(64 << 20);
    let t = z.swapon_redis(&s.url(), 1000, &quick()).unwrap();
    let info = z.backing_info(t).unwrap().unwrap();
    assert_eq!(info.path.to_str(), Some(s.url().as_str()));
    assert!(!info.direct);
    // Incompressible and disabled pool: straight to the server.
    assert_eq!(z.store(t, 7, &noise(7)).unwrap(), StoreOutcome::Swapped);
    z.set_enabled(false);
    for o in 100..300u64 {
        assert_eq!(z.store(t, o, &page(o)).unwrap(), StoreOutcome::Swapped);
    }
    z.set_enabled(true);
    assert_eq!(s.dbsize(), 201);
    let mut out = vec![0u8; PAGE];
    assert_eq!(z.load_into(t, 7, &mut out).unwrap(), LoadSource::Backing);
    assert_eq!(out, noise(7));
    for o in 100..300u64 {
        assert_eq!(z.load(t, o).unwrap(), page(o), "{o}");
    }
    // Compressed on the wire: a text page takes well under a page.
    let key = format!("zswap:{:016x}:150", area_id_of(&s));
    let value: Vec<u8> = s.cmd(&["GET", &key]);
    assert!(value.len() < PAGE / 2, "{} bytes", value.len());
    // Freed slots are unlinked (in batches).
    for o in 100..300u64 {
        assert!(z.invalidate(t, o).unwrap());
    }
    assert!(s.dbsize() < 201, "{}", s.dbsize());
    z.swapoff(t).unwrap();
    assert_eq!(s.dbsize(), 0, "swapoff deletes the area's keys");
}

/// The area id in the one area's keys on `s`.
fn area_id_of(s: &Server) -> u64 {
    let keys: Vec<String> = s.cmd(&["KEYS", "zswap:*"]);
    let ids: std::collections::HashSet<&str> =
        keys.iter().map(|k| k.split(':').nth(1).unwrap()).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    u64::from_str_radix(ids.into_iter().next().unwrap(), 16).unwrap()
}

#[test]
fn a_full_pool_writes_back_to_the_server() {
    let s = Server::start(&[]);
    let z = cache(64 << 20);
    let t = z.swapon_redis(&s.url(), 4000, &quick()).unwrap();
    for o in 0..2000u64 {
        assert_eq!(z.store(t, o, &page(o)).unwrap(), StoreOutcome::Stored);
    }
    assert_eq!(z.writeback(1500).unwrap(), 1500);
    assert_eq!(s.dbsize(), 1500);
    let mut backing = 0;
    let mut out = vec![0u8; PAGE];
    for o in 0..2000u64 {
        if z.load_into(t, o, &mut out).unwrap() == LoadSource::Backing {
            backing += 1;
        }
        assert_eq!(out, page(o), "{o}");
    }
    assert_eq!(backing, 1500);
    z.close().unwrap();
    assert_eq!(s.dbsize(), 0, "close deletes the area's keys");
}

#[test]
fn lost_or_changed_keys_are_corrupt_never_wrong_bytes() {
    let s = Server::start(&[]);
    let z = cache(64 << 20);
    let t = z.swapon_redis(&s.url(), 100, &quick()).unwrap();
    z.set_enabled(false);
    for o in 0..4u64 {
        z.store(t, o, &page(o)).unwrap();
    }
    let id = area_id_of(&s);
    // Slot 1's value copied over slot 0's: valid lz4, right length, wrong slot.
    let v1: Vec<u8> = s.cmd(&["GET", &format!("zswap:{id:016x}:1")]);
    let mut c = s.conn().unwrap();
    redis::cmd("SET")
        .arg(format!("zswap:{id:016x}:0"))
        .arg(&v1)
        .query::<()>(&mut c)
        .unwrap();
    // Slot 2's value with one byte flipped.
    let mut v2: Vec<u8> = s.cmd(&["GET", &format!("zswap:{id:016x}:2")]);
    let last = v2.len() - 1;
    v2[last] ^= 1;
    redis::cmd("SET")
        .arg(format!("zswap:{id:016x}:2"))
        .arg(&v2)
        .query::<()>(&mut c)
        .unwrap();
    for o in [0u64, 2] {
        let e = z.load(t, o).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{o}: {e}");
    }
    assert_eq!(z.load(t, 3).unwrap(), page(3));
    s.cmd::<()>(&["FLUSHALL"]);
    let mut out = vec![0xaau8; PAGE];
    let e = z.load_into(t, 3, &mut out).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(
        out.iter().all(|&b| b == 0),
        "no unchecked byte reaches the caller"
    );
}

#[test]
fn a_server_killed_mid_run_is_a_backing_error_and_loses_no_pooled_page() {
    let mut s = Server::start(&[]);
    let port = s.port;
    let z = cache(64 << 20);
    let t = z.swapon_redis(&s.url(), 1000, &quick()).unwrap();
    for o in 0..200u64 {
        z.store(t, o, &page(o)).unwrap();
    }
    assert_eq!(z.writeback(50).unwrap(), 50);
    s.kill();
    // Writeback fails; the pages stay in the pool, readable.
    let e = z.writeback(50).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Backing, "{e}");
    let errno = e.raw_os_error();
    assert!(
        matches!(errno, Some(libc::ECONNREFUSED) | Some(libc::ECONNRESET)),
        "{errno:?}: {e}"
    );
    for o in 50..200u64 {
        assert_eq!(z.load(t, o).unwrap(), page(o), "{o}");
    }
    // A written-back page cannot be read: an error, not bytes.
    let e = z.load(t, 10).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Backing, "{e}");
    // A page the pool refuses cannot be swapped out: the caller is told.
    let e = z.store(t, 500, &noise(500)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Backing, "{e}");
    // Back, empty (no persistence): the old keys are lost, new I/O works.
    let s2 = Server::start_on(port, &[]);
    let e = z.load(t, 10).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert_eq!(z.writeback(10).unwrap(), 10);
    assert_eq!(s2.dbsize(), 10);
    z.close().unwrap();
    assert_eq!(s2.dbsize(), 0);
}

#[test]
fn a_stopped_server_times_out() {
    let s = Server::start(&[]);
    let z = cache(64 << 20);
    let t = z.swapon_redis(&s.url(), 100, &quick()).unwrap();
    for o in 0..20u64 {
        z.store(t, o, &page(o)).unwrap();
    }
    assert_eq!(z.writeback(5).unwrap(), 5);
    s.signal(libc::SIGSTOP);
    // One load of a written-back page: one reply timeout (0.5 s here).
    let started = std::time::Instant::now();
    let e = z.load(t, 0).unwrap_err();
    let waited = started.elapsed();
    assert_eq!(e.kind(), ErrorKind::Backing, "{e}");
    assert_eq!(e.raw_os_error(), Some(libc::ETIMEDOUT), "{e}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    // Writeback stops at its first timeout rather than trying entry after
    // entry, each waiting as long; the pages stay in the pool.
    let started = std::time::Instant::now();
    let e = z.writeback(5).unwrap_err();
    let waited = started.elapsed();
    s.signal(libc::SIGCONT);
    assert_eq!(e.raw_os_error(), Some(libc::ETIMEDOUT), "{e}");
    // 1.0 s measured here with 0.5 s timeouts; trying entry after entry
    // took 17 s.
    let bound = 3 * quick().io_timeout;
    assert!(waited < bound, "{waited:?} waited, bound {bound:?}");
    for o in 0..20u64 {
        assert_eq!(z.load(t, o).unwrap(), page(o), "{o}");
    }
    assert_eq!(
        z.writeback(5).unwrap(),
        5,
        "works again once the server is back"
    );
}

#[test]
fn a_full_server_is_enospc_and_the_pages_stay_readable() {
    let s = Server::start(&["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]);
    let z = cache(256 << 20);
    let t = z.swapon_redis(&s.url(), 20_000, &quick()).unwrap();
    // Incompressible pages (the pool refuses them) go to the server, 4 KiB
    // each: 2 MB is full long before 5000 of them.
    let mut full_at = None;
    for o in 0..5000u64 {
        match z.store(t, o, &noise(o)) {
            Ok(outcome) => assert_eq!(outcome, StoreOutcome::Swapped),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Backing, "{e}");
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                full_at = Some(o);
                break;
            }
        }
    }
    let full_at = full_at.expect("the server fills up");
    assert!(full_at > 10, "{full_at}");
    for o in 0..full_at {
        assert_eq!(z.load(t, o).unwrap(), noise(o), "{o}");
    }
    assert_eq!(
        z.load(t, full_at).unwrap_err().kind(),
        ErrorKind::NotFound {
            swap_type: t,
            offset: full_at
        }
    );
    // Compressible pages stay in the pool, and writeback fails without losing them.
    for o in 10_000..10_100u64 {
        assert_eq!(z.store(t, o, &page(o)).unwrap(), StoreOutcome::Stored);
    }
    let e = z.writeback(100).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    for o in 10_000..10_100u64 {
        assert_eq!(z.load(t, o).unwrap(), page(o), "{o}");
    }
}

#[test]
fn two_caches_share_one_server() {
    let s = Server::start(&[]);
    let (a, b) = (cache(64 << 20), cache(64 << 20));
    let ta = a.swapon_redis(&s.url(), 100, &quick()).unwrap();
    let tb = b.swapon_redis(&s.url(), 100, &quick()).unwrap();
    a.set_enabled(false);
    b.set_enabled(false);
    for o in 0..50u64 {
        a.store(ta, o, &page(o)).unwrap();
        b.store(tb, o, &page(1000 + o)).unwrap();
    }
    assert_eq!(s.dbsize(), 100);
    a.swapoff(ta).unwrap();
    assert_eq!(s.dbsize(), 50, "only a's keys go");
    for o in 0..50u64 {
        assert_eq!(b.load(tb, o).unwrap(), page(1000 + o));
    }
}

#[test]
fn the_store_pipelines_and_refuses_bad_input() {
    let s = Server::start(&[]);
    let store = RedisStore::open(&s.url(), 300, PAGE, &quick()).unwrap();
    let slots: Vec<u64> = (0..200).collect();
    let pages: Vec<u8> = slots.iter().flat_map(|&o| page(o)).collect();
    let mut checks = Vec::new();
    store.write_many(&slots, &pages, &mut checks).unwrap();
    assert_eq!(checks.len(), 200);
    let mut out = vec![0u8; PAGE];
    for (&o, &c) in slots.iter().zip(&checks) {
        store.read(o, c, &mut out).unwrap();
        assert_eq!(out, page(o));
    }
    let e = store.read(5, checks[5] ^ 1, &mut out).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    let e = store.write(300, &page(0)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    store.discard(&[0, 1, 2]).unwrap();
    assert_eq!(s.dbsize(), 197);
    assert_eq!(store.delete_all().unwrap(), 197);
    // Nothing listens: swapon fails with the errno, typed.
    let e = RedisStore::open(
        &format!("redis://127.0.0.1:{}/0", free_port()),
        8,
        PAGE,
        &quick(),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Backing, "{e}");
    assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED), "{e}");
    let e = RedisStore::open("redis+cluster://", 8, PAGE, &quick()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}

#[test]
fn packed_pages_go_as_they_are_only_if_they_decode_to_the_page() {
    use zswap_rs::compress::CompressorId;
    let s = Server::start(&[]);
    let store = RedisStore::open(&s.url(), 10, PAGE, &quick()).unwrap();
    let (p0, p1) = (page(0), page(1));
    let (z0, z1) = (
        lz4_flex::block::compress(&p0),
        lz4_flex::block::compress(&p1),
    );
    // Slot 0 with its own bytes; slot 1 with slot 0's bytes (a mismatch);
    // slot 2 with bytes of a format the store does not decode.
    let packed = [
        Some((CompressorId::Lz4, &z0[..])),
        Some((CompressorId::Lz4, &z0[..])),
        Some((CompressorId::Zstd, &z1[..])),
    ];
    let pages = [p0.clone(), p1.clone(), p1.clone()].concat();
    let mut checks = Vec::new();
    store
        .write_many_packed(&[0, 1, 2], &pages, &packed, &mut checks)
        .unwrap();
    let id = area_id_of(&s);
    let value = |slot: u64| -> Vec<u8> { s.cmd(&["GET", &format!("zswap:{id:016x}:{slot}")]) };
    assert_eq!(value(0), [&[1u8][..], &z0].concat(), "sent as it was");
    assert_ne!(value(1), [&[1u8][..], &z0].concat(), "compressed anew");
    let mut out = vec![0u8; PAGE];
    for (slot, want) in [(0u64, &p0), (1, &p1), (2, &p1)] {
        store.read(slot, checks[slot as usize], &mut out).unwrap();
        assert_eq!(&out, want, "slot {slot}");
    }
    let e = store
        .write_many_packed(&[3, 4], &pages[..2 * PAGE], &packed[..1], &mut checks)
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    // The other software formats go as they are too, tagged 16 + their id;
    // zstd made with a dictionary the store lacks does not decode there,
    // and is compressed anew.
    let options = zswap_rs::compress::Options::default();
    let mut with_dict = zswap_rs::compress::Options::default();
    let samples: Vec<Vec<u8>> = (0..64).map(page).collect();
    with_dict.dictionary = Some(
        zstd::dict::from_samples(&samples, 4096)
            .expect("a dictionary")
            .into(),
    );
    for (slot, name, opts, as_is) in [
        (5u64, "lzo", &options, true),
        (6, "zstd", &options, true),
        (7, "deflate", &options, true),
        (8, "zstd", &with_dict, false),
    ] {
        let c = zswap_rs::compress::create(name, opts).unwrap();
        let p = page(slot);
        let mut z = vec![0u8; 2 * PAGE];
        let n = c.compress(&p, &mut z).unwrap();
        let mut checks = Vec::new();
        store
            .write_many_packed(&[slot], &p, &[Some((c.id(), &z[..n]))], &mut checks)
            .unwrap();
        let sent = [&[16 + c.id() as u8][..], &z[..n]].concat();
        assert_eq!(value(slot) == sent, as_is, "{name} at slot {slot}");
        store.read(slot, checks[0], &mut out).unwrap();
        assert_eq!(out, p, "{name} at slot {slot}");
    }
}

#[test]
fn a_cluster_spreads_an_area_over_its_masters() {
    let nodes: Vec<Server> = (0..3)
        .map(|_| {
            Server::start(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ])
        })
        .collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Bounded wait for the cluster to agree on its slots.
    let mut ok = false;
    for _ in 0..200 {
        let info: String = nodes[0].cmd(&["CLUSTER", "INFO"]);
        if info.contains("cluster_state:ok") {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ok, "cluster did not come up");
    let url = format!("redis+cluster://{}", addrs.join(","));
    let z = cache(64 << 20);
    let t = z.swapon_redis(&url, 2000, &quick()).unwrap();
    for o in 0..600u64 {
        z.store(t, o, &page(o)).unwrap();
    }
    assert_eq!(z.writeback(600).unwrap(), 600);
    let sizes: Vec<u64> = nodes.iter().map(|s| s.dbsize()).collect();
    assert_eq!(sizes.iter().sum::<u64>(), 600, "{sizes:?}");
    assert!(sizes.iter().all(|&n| n > 100), "spread: {sizes:?}");
    for o in 0..600u64 {
        assert_eq!(z.load(t, o).unwrap(), page(o), "{o}");
    }
    z.swapoff(t).unwrap();
    let sizes: Vec<u64> = nodes.iter().map(|s| s.dbsize()).collect();
    assert_eq!(sizes, [0, 0, 0], "swapoff deletes on every master");
}

/// A page that says which version of which offset it is.
fn stamped(offset: u64, version: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(PAGE);
    let mut i = 0u64;
    while p.len() < PAGE {
        p.extend_from_slice(format!("[offset {offset} version {version} word {i}]").as_bytes());
        i += 1;
    }
    p.truncate(PAGE);
    p
}

/// The (offset, version) a page says it is, if it is a whole stamped page.
fn read_stamp(page: &[u8]) -> Option<(u64, u64)> {
    let text = String::from_utf8_lossy(&page[..48]);
    let mut parts = text.strip_prefix("[offset ")?.split(' ');
    let o = parts.next()?.parse().ok()?;
    parts.next()?; // "version"
    let v = parts.next()?.parse().ok()?;
    (stamped(o, v) == page).then_some((o, v))
}

/// Batched writeback racing stores, loads and invalidates of the same
/// offsets: owners store new versions of theirs and read each back at
/// once, a reader checks that versions never go back, a writeback thread
/// keeps emptying the pool in batches of 64, and the pool is so small that
/// stores fill it and write back too. At the end every offset holds its latest version
/// or, invalidated, nothing.
#[test]
fn batched_writeback_races_lose_nothing_and_resurrect_nothing() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    let s = Server::start(&[]);
    let z = cache(24 << 10);
    let t = z.swapon_redis(&s.url(), 64, &quick()).unwrap();
    const OWNERS: u64 = 4;
    const PER_OWNER: u64 = 8;
    const ROUNDS: u64 = 200;
    let latest: Vec<AtomicU64> = (0..64).map(|_| AtomicU64::new(u64::MAX)).collect();
    let done = AtomicBool::new(false);
    let version_page = |o: u64, v: u64| {
        if v % 7 == 3 {
            noise(o * 1000 + v)
        } else {
            stamped(o, v)
        }
    };
    std::thread::scope(|sc| {
        let owners: Vec<_> = (0..OWNERS)
            .map(|w| {
                let (z, latest, version_page) = (&z, &latest, &version_page);
                sc.spawn(move || {
                    for v in 0..ROUNDS {
                        for o in w * PER_OWNER..(w + 1) * PER_OWNER {
                            let page = version_page(o, v);
                            let out = z.store(t, o, &page).unwrap();
                            assert!(
                                matches!(out, StoreOutcome::Stored | StoreOutcome::Swapped),
                                "{out:?}"
                            );
                            latest[o as usize].store(v, SeqCst);
                            assert!(z.load(t, o).unwrap() == page, "offset {o} version {v}");
                            if v % 11 == 5 {
                                assert!(z.invalidate(t, o).unwrap());
                                latest[o as usize].store(u64::MAX, SeqCst);
                            }
                        }
                    }
                })
            })
            .collect();
        sc.spawn(|| {
            let mut seen = std::collections::HashMap::new();
            let mut i = 0;
            while !done.load(SeqCst) {
                let o = i % (OWNERS * PER_OWNER);
                i += 7;
                match z.load(t, o) {
                    Ok(page) => {
                        if let Some((po, pv)) = read_stamp(&page) {
                            assert_eq!(po, o, "page of another slot served");
                            let last = seen.entry(o).or_insert(pv);
                            assert!(pv >= *last, "offset {o}: version {pv} after {last}");
                            *last = pv;
                        }
                    }
                    Err(e) => assert!(
                        matches!(e.kind(), ErrorKind::NotFound { .. }),
                        "offset {o}: {e}"
                    ),
                }
            }
        });
        sc.spawn(|| {
            while !done.load(SeqCst) {
                z.writeback(64).unwrap();
            }
        });
        let results: Vec<_> = owners.into_iter().map(|h| h.join()).collect();
        done.store(true, SeqCst);
        for r in results {
            if let Err(panic) = r {
                std::panic::resume_unwind(panic);
            }
        }
    });
    for o in 0..OWNERS * PER_OWNER {
        match (latest[o as usize].load(SeqCst), z.load(t, o)) {
            (u64::MAX, Err(e)) => assert!(matches!(e.kind(), ErrorKind::NotFound { .. }), "{e}"),
            (u64::MAX, Ok(_)) => panic!("offset {o} was invalidated and came back"),
            (v, Ok(page)) => assert!(page == version_page(o, v), "offset {o} is not version {v}"),
            (v, Err(e)) => panic!("offset {o} lost version {v}: {e}"),
        }
    }
    let stats = z.stats();
    assert!(stats.written_back_pages > 64, "{stats:?}");
    assert!(
        stats.pool_limit_hit > 0,
        "full pools wrote back too: {stats:?}"
    );
    for o in 0..64 {
        z.invalidate(t, o).unwrap();
    }
    let stats = z.stats();
    assert_eq!(
        (stats.stored_pages, stats.pool_total_size),
        (0, 0),
        "{stats:?}"
    );
    assert_eq!(z.backing_info(t).unwrap().unwrap().used_slots, 0);
}
