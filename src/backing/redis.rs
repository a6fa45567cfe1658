//! A swap area backed by a Redis server or a Redis Cluster: the cold end of
//! the memory tier in RAM that other machines lend.
//!
//! Slot `n` of an area lives under the key `zswap:<area id, 16 hex>:<n>`, so
//! that many caches (each area has a new random id, like a swap file's
//! header) share one server or cluster without collision. The key has no
//! `{...}` hash tag on purpose: a cluster spreads an area over all its
//! masters instead of one. `swapoff` and `close` drop the store, and its
//! `Drop` deletes the area's keys: `SCAN MATCH` + pipelined `UNLINK` on the
//! server, or on every master of a cluster (a set of written slots would
//! cost the client RAM per page, which is what the area exists to save).
//!
//! Values are a one-byte tag, then the page compressed. Written-back pages
//! travel as the pool's own bytes, as the SPEC wants: writeback hands them
//! over beside the page ([`BackingStore::write_many_packed`]), and the
//! store sends them, tagged with their format (lz4, lzo, zstd, deflate:
//! IAA's and NX's streams are deflate too), once it has seen them decode to
//! the page with its own decoder, instead of compressing again (which took
//! about half of the writeback thread's time). What it cannot decode alone
//! (zstd with the cache's trained dictionary) and pages stored straight to
//! the server are compressed here with lz4; a page that does not shrink
//! goes raw. The check the cache keeps is that of the uncompressed page
//! ([`page_check`]: area id, slot, bytes), verified after decompression,
//! so a lost key (FLUSHALL, a restart without persistence, an eviction), a
//! changed one or one copied from another slot is a check failure
//! (`InvalidData`, the cache's `CorruptPageError`), never wrong bytes.
//!
//! Timeouts: connecting waits at most [`RedisOptions::connect_timeout`]
//! (default 2 s) and every reply at most [`RedisOptions::io_timeout`]
//! (default 2 s). A pipelined batch of 64 pages is about 256 KiB, a few ms
//! on a LAN; 2 s is hundreds of times that, room for a server's own pauses
//! (a fork for a snapshot), yet short enough that a store or load of a
//! page held by an unreachable server fails promptly with `ETIMEDOUT`
//! rather than holding its slot's claim indefinitely. Faults keep an errno:
//! timeout `ETIMEDOUT`, refused `ECONNREFUSED`, dropped `ECONNRESET`,
//! `maxmemory` reached (`OOM`) `ENOSPC`, anything else `EIO`.

use std::fmt;
use std::io;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ::redis::cluster::{cluster_pipe, ClusterClient, ClusterConnection};
use ::redis::{Client, Connection, RedisError};
use parking_lot::Mutex;

use super::{check_failed, page_check, slot_out_of_range, BackingStore};
use crate::compress::{self, Compressor, CompressorId};
use crate::error::{Error, ErrorKind, Result};

/// How to reach a Redis store.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisOptions {
    /// The longest wait for a TCP connection (and its handshake).
    pub connect_timeout: Duration,
    /// The longest wait for any reply, and for a request to be sent.
    pub io_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(2),
        }
    }
}

/// The longest timeout [`RedisOptions::from_secs`] takes, in seconds: an
/// hour. A store or load waits that long at most for a server that does
/// not answer; longer is no timeout anyone means.
pub const MAX_REDIS_TIMEOUT_SECS: f64 = 3600.0;

impl RedisOptions {
    /// Timeouts from seconds, as a user gives them: each a finite number
    /// above zero (of at least a nanosecond) and at most
    /// [`MAX_REDIS_TIMEOUT_SECS`](crate::backing::MAX_REDIS_TIMEOUT_SECS);
    /// anything else is an [`ErrorKind::Config`] error naming the bad one,
    /// never a panic.
    pub fn from_secs(connect_timeout: f64, io_timeout: f64) -> Result<RedisOptions> {
        let duration = |name: &str, secs: f64| {
            (secs.is_finite() && secs > 0.0 && secs <= MAX_REDIS_TIMEOUT_SECS)
                .then(|| Duration::from_secs_f64(secs))
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    Error::config(format!(
                        "{name} must be a positive number of seconds up to {MAX_REDIS_TIMEOUT_SECS}, got {secs}"
                    ))
                })
        };
        Ok(RedisOptions {
            connect_timeout: duration("connect_timeout", connect_timeout)?,
            io_timeout: duration("io_timeout", io_timeout)?,
        })
    }
}

/// Pages per pipelined round trip in [`BackingStore::write_many`].
const PIPELINE_PAGES: usize = 64;

/// Idle connections kept for reuse; more threads than this connect anew.
const MAX_IDLE: usize = 16;

/// Value tags: what follows the first byte.
const TAG_RAW: u8 = 0;
const TAG_LZ4: u8 = 1;
/// `TAG_POOL + id`: the pool's own bytes of compressor `id`
/// ([`CompressorId`]), decoded by this store's decoder of that format.
const TAG_POOL: u8 = 16;

/// The longest `Drop` spends deleting an area's keys: a bound on the SCAN
/// loop, which a live server could otherwise keep going.
const DELETE_DEADLINE: Duration = Duration::from_secs(60);

enum Target {
    Server(Client),
    Cluster {
        client: ClusterClient,
        /// `user:password@`, or empty: every node is reached with it.
        userinfo: String,
    },
}

enum Conn {
    Server(Connection),
    Cluster(Box<ClusterConnection>),
}

/// A Redis server or cluster holding the pages of one swap area.
pub struct RedisStore {
    target: Target,
    /// The URL without its password.
    describe: String,
    pages: u64,
    page_size: usize,
    area_id: u64,
    /// `zswap:<id>:`, the prefix of every key of this area.
    prefix: String,
    options: RedisOptions,
    idle: Mutex<Vec<Conn>>,
    /// Software decoders of the pool's formats, made on first use; `None`
    /// where this machine has none.
    decoders: [OnceLock<Option<Arc<dyn Compressor>>>; CompressorId::ALL.len()],
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.describe)
            .field("pages", &self.pages)
            .field("area_id", &format_args!("{:016x}", self.area_id))
            .finish()
    }
}

impl RedisStore {
    /// Connect to `url` (`redis://host:port/db`, or
    /// `redis+cluster://host:port,host:port,...`) for an area of `pages`
    /// slots of `page_size` bytes, with a new random area id. The server
    /// must answer a `PING` within the timeouts: an error is
    /// [`ErrorKind::Backing`] with the errno of the fault, a URL that does
    /// not parse [`ErrorKind::Config`].
    pub fn open(
        url: &str,
        pages: u64,
        page_size: usize,
        options: &RedisOptions,
    ) -> Result<RedisStore> {
        if options.connect_timeout.is_zero() || options.io_timeout.is_zero() {
            return Err(Error::config("Redis timeouts must be longer than zero"));
        }
        let target = parse_target(url, options)?;
        let area_id = super::file::random_id()
            .map_err(|e| Error::io(ErrorKind::Backing, "no random id for a Redis area", e))?;
        let store = RedisStore {
            target,
            describe: strip_password(url),
            pages,
            page_size,
            area_id,
            prefix: format!("zswap:{area_id:016x}:"),
            options: options.clone(),
            idle: Mutex::new(Vec::new()),
            decoders: Default::default(),
        };
        store
            .with_conn(|c| match c {
                Conn::Server(c) => redis::cmd("PING").query::<String>(c).map(drop),
                Conn::Cluster(c) => redis::cmd("PING").query::<String>(&mut **c).map(drop),
            })
            .map_err(|e| {
                Error::io(
                    ErrorKind::Backing,
                    format!("cannot reach {}", store.describe),
                    e,
                )
            })?;
        Ok(store)
    }

    fn key(&self, slot: u64) -> String {
        format!("{}{slot}", self.prefix)
    }

    fn connect(&self) -> std::result::Result<Conn, RedisError> {
        match &self.target {
            Target::Server(client) => {
                let c = client.get_connection_with_timeout(self.options.connect_timeout)?;
                c.set_read_timeout(Some(self.options.io_timeout))?;
                c.set_write_timeout(Some(self.options.io_timeout))?;
                Ok(Conn::Server(c))
            }
            Target::Cluster { client, .. } => {
                let c = client.get_connection()?;
                c.set_read_timeout(Some(self.options.io_timeout))?;
                c.set_write_timeout(Some(self.options.io_timeout))?;
                Ok(Conn::Cluster(Box::new(c)))
            }
        }
    }

    /// Run `f` on an idle connection (or a new one). A connection that saw
    /// an I/O fault is dropped, so the next call reconnects.
    fn with_conn<R>(
        &self,
        f: impl FnOnce(&mut Conn) -> std::result::Result<R, RedisError>,
    ) -> io::Result<R> {
        let popped = self.idle.lock().pop();
        let mut conn = match popped {
            Some(c) => c,
            None => self.connect().map_err(to_io)?,
        };
        let r = f(&mut conn);
        let healthy = match &r {
            Ok(_) => true,
            Err(e) => !(e.is_io_error() || e.is_timeout() || e.is_connection_dropped()),
        };
        if healthy {
            let mut idle = self.idle.lock();
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
        r.map_err(to_io)
    }

    /// The value for `page` and the page's check. From `packed`, the
    /// cache's lz4 bytes of the page, if it has them and they decode to
    /// exactly `page` (into `scratch`, a buffer of the store's own, so
    /// that the check is of what the value holds); else by compressing a
    /// copy of `page` (so that the check is of what is sent).
    fn encode(
        &self,
        slot: u64,
        page: &[u8],
        packed: Option<(CompressorId, &[u8])>,
        scratch: &mut Vec<u8>,
    ) -> io::Result<(Vec<u8>, u32)> {
        if slot >= self.pages {
            return Err(slot_out_of_range(slot, self.pages));
        }
        if page.len() != self.page_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "page of the wrong size",
            ));
        }
        if let Some((id, bytes)) = packed.filter(|(_, b)| b.len() < page.len()) {
            scratch.resize(page.len(), 0);
            let format = id.stream_format();
            if self.unpack(format, bytes, scratch) && scratch[..] == *page {
                let mut value = Vec::with_capacity(1 + bytes.len());
                value.push(tag_of(format));
                value.extend_from_slice(bytes);
                return Ok((value, page_check(self.area_id, slot, scratch)));
            }
        }
        let copy = page.to_vec();
        let check = page_check(self.area_id, slot, &copy);
        let mut value = vec![0u8; 1 + lz4_flex::block::get_maximum_output_size(copy.len())];
        match lz4_flex::block::compress_into(&copy, &mut value[1..]) {
            Ok(n) if n < copy.len() => {
                value[0] = TAG_LZ4;
                value.truncate(1 + n);
            }
            _ => {
                value.truncate(1);
                value[0] = TAG_RAW;
                value.extend_from_slice(&copy);
            }
        }
        Ok((value, check))
    }

    /// Decode `bytes` of `format` into exactly `out`; false if they do not
    /// decode, or to another length.
    fn unpack(&self, format: CompressorId, bytes: &[u8], out: &mut [u8]) -> bool {
        if format == CompressorId::Lz4 {
            return matches!(
                lz4_flex::block::decompress_into(bytes, out),
                Ok(n) if n == out.len()
            );
        }
        let decoder = self.decoders[format as usize]
            .get_or_init(|| compress::create(format.name(), &compress::Options::default()).ok());
        decoder
            .as_ref()
            .is_some_and(|d| d.decompress(bytes, out).is_ok())
    }

    /// Decode `value` into `out` and verify it against `check`.
    fn decode(&self, slot: u64, check: u32, value: &[u8], out: &mut [u8]) -> io::Result<()> {
        let ok = match value.split_first() {
            Some((&TAG_RAW, body)) if body.len() == out.len() => {
                out.copy_from_slice(body);
                true
            }
            Some((&tag, body)) => {
                format_of(tag).is_some_and(|format| self.unpack(format, body, out))
            }
            None => false,
        };
        if ok && page_check(self.area_id, slot, out) == check {
            Ok(())
        } else {
            Err(check_failed(slot))
        }
    }

    /// Delete every key of this area, on the server or on every master of
    /// the cluster; returns how many were deleted. `Drop` calls it.
    pub fn delete_all(&self) -> io::Result<u64> {
        let deadline = Instant::now() + DELETE_DEADLINE;
        match &self.target {
            Target::Server(_) => self.with_conn(|c| match c {
                Conn::Server(c) => delete_matching(c, &self.prefix, deadline),
                Conn::Cluster(_) => unreachable_conn(),
            }),
            Target::Cluster { userinfo, .. } => {
                let nodes = self.with_conn(|c| match c {
                    Conn::Cluster(c) => {
                        redis::cmd("CLUSTER").arg("NODES").query::<String>(&mut **c)
                    }
                    Conn::Server(_) => unreachable_conn(),
                })?;
                let mut deleted = 0;
                for addr in masters(&nodes) {
                    let client =
                        Client::open(format!("redis://{userinfo}{addr}/")).map_err(to_io)?;
                    let mut c = client
                        .get_connection_with_timeout(self.options.connect_timeout)
                        .map_err(to_io)?;
                    c.set_read_timeout(Some(self.options.io_timeout))
                        .map_err(to_io)?;
                    deleted += delete_matching(&mut c, &self.prefix, deadline).map_err(to_io)?;
                }
                Ok(deleted)
            }
        }
    }
}

/// A connection of the other kind than the target's: cannot happen, as
/// connections are made from the target; an error rather than a panic.
fn unreachable_conn<R>() -> std::result::Result<R, RedisError> {
    Err(RedisError::from((
        redis::ErrorKind::Client,
        "connection of the wrong kind",
    )))
}

/// `SCAN MATCH prefix*` on one node, unlinking what it finds (one `UNLINK`
/// per key, pipelined: keys of one cluster node may sit in different hash
/// slots, and a multi-key command across slots is refused).
fn delete_matching(
    c: &mut Connection,
    prefix: &str,
    deadline: Instant,
) -> std::result::Result<u64, RedisError> {
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query(c)?;
        if !keys.is_empty() {
            let mut p = redis::pipe();
            for k in &keys {
                p.cmd("UNLINK").arg(k).ignore();
            }
            p.exec(c)?;
            deleted += keys.len() as u64;
        }
        cursor = next;
        if cursor == 0 || Instant::now() > deadline {
            return Ok(deleted);
        }
    }
}

/// The `host:port` of every live master in `CLUSTER NODES` output.
fn masters(nodes: &str) -> Vec<String> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (_id, addr, flags) = (f.next()?, f.next()?, f.next()?);
            let live_master = flags.split(',').any(|x| x == "master")
                && !flags.split(',').any(|x| x == "fail" || x == "noaddr");
            live_master.then(|| addr.split('@').next().unwrap_or(addr).to_string())
        })
        .collect()
}

/// The client for `url`: `redis://...` for one server,
/// `redis+cluster://[user:pass@]host:port,host:port,...` for a cluster.
fn parse_target(url: &str, options: &RedisOptions) -> Result<Target> {
    let bad = |why: String| Error::config(format!("bad Redis URL {}: {why}", strip_password(url)));
    if let Some(rest) = url.strip_prefix("redis+cluster://") {
        let (userinfo, hosts) = match rest.rsplit_once('@') {
            Some((u, h)) => (format!("{u}@"), h),
            None => (String::new(), rest),
        };
        let hosts = hosts.trim_end_matches('/');
        let nodes: Vec<String> = hosts
            .split(',')
            .map(|h| format!("redis://{userinfo}{}/", h.trim()))
            .collect();
        if hosts.is_empty() || hosts.split(',').any(|h| h.trim().is_empty()) {
            return Err(bad("expected host:port,host:port,...".into()));
        }
        let client = ClusterClient::builder(nodes)
            .connection_timeout(options.connect_timeout)
            .response_timeout(options.io_timeout)
            .retries(2)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        return Ok(Target::Cluster { client, userinfo });
    }
    if !url.starts_with("redis://") {
        return Err(bad("expected redis:// or redis+cluster://".into()));
    }
    Client::open(url)
        .map(Target::Server)
        .map_err(|e| bad(e.to_string()))
}

/// `url` with any password replaced by `***`, for messages.
fn strip_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A Redis fault as an OS error, so that the caller gets an errno. The
/// server's own words are lost: an `io::Error` carries either an errno or a
/// message, and the cache's callers tell faults apart by errno.
fn to_io(e: RedisError) -> io::Error {
    // A pipeline's error is the list of its commands' errors.
    let oom = e.code() == Some("OOM")
        || e.clone()
            .into_server_errors()
            .is_some_and(|errs| errs.iter().any(|(_, s)| s.code() == "OOM"));
    let errno = if oom {
        libc::ENOSPC
    } else if e.is_timeout() {
        libc::ETIMEDOUT
    } else if e.is_connection_refusal() {
        libc::ECONNREFUSED
    } else if e.is_connection_dropped() {
        libc::ECONNRESET
    } else {
        libc::EIO
    };
    io::Error::from_raw_os_error(errno)
}

/// The value tag of bytes of `format`.
fn tag_of(format: CompressorId) -> u8 {
    match format {
        CompressorId::Lz4 => TAG_LZ4,
        other => TAG_POOL + other as u8,
    }
}

/// The format a value tag says its bytes are in (`None` for raw, or a tag
/// no store writes).
fn format_of(tag: u8) -> Option<CompressorId> {
    match tag {
        TAG_LZ4 => Some(CompressorId::Lz4),
        t if t >= TAG_POOL => CompressorId::from_bits(t - TAG_POOL),
        _ => None,
    }
}

impl BackingStore for RedisStore {
    fn slots(&self) -> u64 {
        self.pages
    }

    fn page_size(&self) -> usize {
        self.page_size
    }

    fn area_id(&self) -> u64 {
        self.area_id
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    /// One pipeline: the pages of a batch share a round trip.
    fn write_batch_hint(&self) -> usize {
        PIPELINE_PAGES
    }

    fn write(&self, slot: u64, page: &[u8]) -> io::Result<u32> {
        let mut checks = Vec::with_capacity(1);
        self.write_many(&[slot], page, &mut checks)?;
        Ok(checks[0])
    }

    /// Pipelines of `PIPELINE_PAGES` (64) pages. A pipeline that fails reports none
    /// of its pages written (some may be on the server: their keys are
    /// orphans until `swapoff` deletes the area's keys), so the caller
    /// never counts a page the server may not hold.
    fn write_many(&self, slots: &[u64], pages: &[u8], checks: &mut Vec<u32>) -> io::Result<()> {
        self.write_many_packed(slots, pages, &[], checks)
    }

    /// [`write_many`](BackingStore::write_many); a page given with the
    /// pool's bytes (as writeback hands them) goes as those bytes, once
    /// they are seen to decode to the page, instead of being compressed
    /// again.
    fn write_many_packed(
        &self,
        slots: &[u64],
        pages: &[u8],
        packed: &[Option<(CompressorId, &[u8])>],
        checks: &mut Vec<u32>,
    ) -> io::Result<()> {
        if pages.len() != slots.len() * self.page_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "pages is not slots.len() pages long",
            ));
        }
        if !packed.is_empty() && packed.len() != slots.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "packed is neither empty nor slots.len() long",
            ));
        }
        let mut values = Vec::with_capacity(PIPELINE_PAGES.min(slots.len()));
        let mut scratch = Vec::new();
        for (i, slots) in slots.chunks(PIPELINE_PAGES).enumerate() {
            let first = i * PIPELINE_PAGES;
            let pages = &pages[first * self.page_size..][..slots.len() * self.page_size];
            values.clear();
            for (j, (&slot, page)) in slots
                .iter()
                .zip(pages.chunks_exact(self.page_size))
                .enumerate()
            {
                let packed = packed.get(first + j).copied().flatten();
                values.push((
                    self.key(slot),
                    self.encode(slot, page, packed, &mut scratch)?,
                ));
            }
            self.with_conn(|c| match c {
                Conn::Server(c) => {
                    let mut p = redis::pipe();
                    for (k, (v, _)) in &values {
                        p.cmd("SET").arg(k).arg(v).ignore();
                    }
                    p.exec(c)
                }
                Conn::Cluster(c) => {
                    let mut p = cluster_pipe();
                    for (k, (v, _)) in &values {
                        p.cmd("SET").arg(k).arg(v).ignore();
                    }
                    p.exec(c)
                }
            })?;
            checks.extend(values.iter().map(|(_, (_, check))| *check));
        }
        Ok(())
    }

    fn read(&self, slot: u64, check: u32, out: &mut [u8]) -> io::Result<()> {
        out.fill(0);
        if slot >= self.pages {
            return Err(slot_out_of_range(slot, self.pages));
        }
        if out.len() != self.page_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer of the wrong size",
            ));
        }
        let key = self.key(slot);
        let value: Option<Vec<u8>> = self.with_conn(|c| {
            let get = redis::cmd("GET").arg(&key).clone();
            match c {
                Conn::Server(c) => get.query(c),
                Conn::Cluster(c) => get.query(&mut **c),
            }
        })?;
        // A missing key (lost to FLUSHALL, a restart, an eviction) fails its
        // check like a changed one.
        let r = match value {
            Some(v) => self.decode(slot, check, &v, out),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("slot {slot}: its key {key} is gone from the server"),
            )),
        };
        if r.is_err() {
            out.fill(0);
        }
        r
    }

    /// One pipelined `UNLINK` per slot.
    fn discard(&self, slots: &[u64]) -> io::Result<()> {
        for chunk in slots.chunks(PIPELINE_PAGES * 4) {
            self.with_conn(|c| match c {
                Conn::Server(c) => {
                    let mut p = redis::pipe();
                    for &s in chunk {
                        p.cmd("UNLINK").arg(self.key(s)).ignore();
                    }
                    p.exec(c)
                }
                Conn::Cluster(c) => {
                    let mut p = cluster_pipe();
                    for &s in chunk {
                        p.cmd("UNLINK").arg(self.key(s)).ignore();
                    }
                    p.exec(c)
                }
            })?;
        }
        Ok(())
    }
}

/// `swapoff` and `close` drop the store: its keys go with it. A server
/// that is down keeps them (nothing else can be done from here); they are
/// namespaced by an id no later area has.
impl Drop for RedisStore {
    fn drop(&mut self) {
        let _ = self.delete_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            strip_password("redis://u:secret@h:1/0"),
            "redis://u:***@h:1/0"
        );
        assert_eq!(strip_password("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(
            strip_password("redis+cluster://:pw@a:1,b:2"),
            "redis+cluster://:***@a:1,b:2"
        );
    }

    #[test]
    fn cluster_nodes_give_live_masters() {
        let nodes = "\
a 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922
c 127.0.0.1:7003@17003 master,fail - 0 0 3 connected 10923-16383
d 127.0.0.1:7004@17004 slave a 0 0 1 connected
";
        assert_eq!(masters(nodes), ["127.0.0.1:7001", "127.0.0.1:7002"]);
    }

    #[test]
    fn timeouts_out_of_range_are_config_errors() {
        for bad in [0.0, -1.0, 1e-300, f64::NAN, f64::INFINITY, 3600.5, 1e300] {
            for (c, i, name) in [(bad, 1.0, "connect_timeout"), (1.0, bad, "io_timeout")] {
                let e = RedisOptions::from_secs(c, i).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Config, "{bad}");
                assert!(e.to_string().contains(name), "{e}");
            }
        }
        let o = RedisOptions::from_secs(0.25, 3600.0).unwrap();
        assert_eq!(o.connect_timeout, Duration::from_millis(250));
        assert_eq!(o.io_timeout, Duration::from_secs(3600));
    }

    #[test]
    fn bad_urls_are_config_errors() {
        for url in ["http://h:1", "redis+cluster://", "redis+cluster://a:1,,b:2"] {
            let e = parse_target(url, &RedisOptions::default())
                .err()
                .expect(url);
            assert_eq!(e.kind(), ErrorKind::Config, "{url}");
        }
    }
}
