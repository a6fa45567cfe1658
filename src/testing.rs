//! Helpers the unit tests share.

/// The xorshift64 sequence (13, 7, 17) from `seed`, each value after its
/// step: noise for pages that must not compress, and random offsets.
pub fn xorshift(seed: u64) -> impl Iterator<Item = u64> {
    std::iter::successors(Some(seed), |&x| {
        let x = x ^ (x << 13);
        let x = x ^ (x >> 7);
        Some(x ^ (x << 17))
    })
    .skip(1)
}

/// `len` bytes of xorshift noise from `seed` (the low byte of each value).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    xorshift(seed).take(len).map(|x| x as u8).collect()
}

/// Where a [`Gate`] can stop a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Inside `compress`: a store, between its checks and taking the area
    /// lock again.
    Compress,
    /// Inside `decompress`: a load or a writeback, with the area lock
    /// dropped (and, for a writeback, the slot claimed).
    Decompress,
}

/// lz4 under its own id, which can be made to stop the next call of a
/// [`Step`] until the test lets it go, or to panic there: a test holds a
/// call in the middle of its unlocked stretch and races something against
/// it with no sleep. A cache uses it for lz4 entries only if it is the
/// first lz4 instance the cache sees (`Config::compressor` another
/// compressor, then `set_compressor_instance`).
#[derive(Debug)]
pub struct Gate {
    lz4: std::sync::Arc<dyn crate::compress::Compressor>,
    state: parking_lot::Mutex<GateState>,
    changed: parking_lot::Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    armed: Option<(Step, bool)>,
    held: bool,
}

impl Gate {
    /// An open gate.
    pub fn new() -> std::sync::Arc<Gate> {
        let lz4 = crate::compress::create("lz4", &Default::default()).expect("lz4");
        std::sync::Arc::new(Gate {
            lz4,
            state: Default::default(),
            changed: Default::default(),
        })
    }

    /// Stop the next call of `step` until [`release`](Gate::release).
    pub fn hold(&self, step: Step) {
        self.state.lock().armed = Some((step, false));
    }

    /// Make the next call of `step` panic.
    pub fn panic_at(&self, step: Step) {
        self.state.lock().armed = Some((step, true));
    }

    /// Wait until a call is held.
    pub fn wait_held(&self) {
        let mut s = self.state.lock();
        while !s.held {
            self.changed.wait(&mut s);
        }
    }

    /// Let the held call go on.
    pub fn release(&self) {
        self.state.lock().held = false;
        self.changed.notify_all();
    }

    fn checkpoint(&self, step: Step) {
        let mut s = self.state.lock();
        match s.armed {
            Some((armed, panics)) if armed == step => {
                s.armed = None;
                if panics {
                    drop(s);
                    panic!("{step:?} panics, as the test asked");
                }
                s.held = true;
                self.changed.notify_all();
                while s.held {
                    self.changed.wait(&mut s);
                }
            }
            _ => {}
        }
    }
}

impl crate::compress::Compressor for Gate {
    fn id(&self) -> crate::compress::CompressorId {
        self.lz4.id()
    }

    fn compress(
        &self,
        src: &[u8],
        dst: &mut [u8],
    ) -> Result<usize, crate::compress::CompressError> {
        self.checkpoint(Step::Compress);
        self.lz4.compress(src, dst)
    }

    fn decompress(
        &self,
        src: &[u8],
        dst: &mut [u8],
    ) -> Result<(), crate::compress::DecompressError> {
        self.checkpoint(Step::Decompress);
        self.lz4.decompress(src, dst)
    }
}

/// A backing store in memory whose writes fail at chosen slots (`EFBIG`,
/// as past a file size limit), or everywhere as an unreachable server's
/// do (`ECONNREFUSED`), for the tests of what the cache does when a store
/// fails part of the way. It takes writeback batches of the size it is
/// told (1 by default, as a file), and can hold the next `write_many`
/// until the test lets it go ([`MemStore::hold_next_write`]).
#[derive(Debug)]
pub struct MemStore {
    pages: parking_lot::Mutex<std::collections::HashMap<u64, Vec<u8>>>,
    failing: parking_lot::Mutex<std::collections::HashSet<u64>>,
    slots: u64,
    batch: std::sync::atomic::AtomicUsize,
    down: std::sync::atomic::AtomicBool,
    /// `write_many` calls so far.
    calls: std::sync::atomic::AtomicUsize,
    hold: parking_lot::Mutex<HoldState>,
    hold_changed: parking_lot::Condvar,
}

#[derive(Debug, Default)]
struct HoldState {
    armed: bool,
    held: bool,
}

impl MemStore {
    /// A store of `slots` 4 KiB slots, every write succeeding.
    pub fn new(slots: u64) -> std::sync::Arc<MemStore> {
        std::sync::Arc::new(MemStore {
            pages: Default::default(),
            failing: Default::default(),
            slots,
            batch: std::sync::atomic::AtomicUsize::new(1),
            down: Default::default(),
            calls: Default::default(),
            hold: Default::default(),
            hold_changed: Default::default(),
        })
    }

    /// Take writeback batches of `pages` (its `write_batch_hint`).
    pub fn set_batch_hint(&self, pages: usize) {
        self.batch
            .store(pages, std::sync::atomic::Ordering::Relaxed);
    }

    /// Fail every write (`true`) with `ECONNREFUSED`, as a server that is
    /// down, or succeed again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many times `write_many` was called.
    pub fn write_many_calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stop the next `write_many`, before it writes anything, until
    /// [`release_write`](MemStore::release_write).
    pub fn hold_next_write(&self) {
        self.hold.lock().armed = true;
    }

    /// Wait until a `write_many` is held.
    pub fn wait_write_held(&self) {
        let mut h = self.hold.lock();
        while !h.held {
            self.hold_changed.wait(&mut h);
        }
    }

    /// Let the held `write_many` go on.
    pub fn release_write(&self) {
        self.hold.lock().held = false;
        self.hold_changed.notify_all();
    }

    /// The page in `slot`, if any, as the store holds it.
    pub fn page(&self, slot: u64) -> Option<Vec<u8>> {
        self.pages.lock().get(&slot).cloned()
    }

    /// Make writes to `slot` fail (`true`) or succeed again.
    pub fn fail_at(&self, slot: u64, fail: bool) {
        let mut f = self.failing.lock();
        if fail {
            f.insert(slot);
        } else {
            f.remove(&slot);
        }
    }
}

impl crate::backing::BackingStore for MemStore {
    fn slots(&self) -> u64 {
        self.slots
    }
    fn page_size(&self) -> usize {
        4096
    }
    fn area_id(&self) -> u64 {
        0x5eed
    }
    fn describe(&self) -> String {
        "memory".into()
    }
    fn write_batch_hint(&self) -> usize {
        self.batch.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn write_many(
        &self,
        slots: &[u64],
        pages: &[u8],
        checks: &mut Vec<u32>,
    ) -> std::io::Result<()> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut h = self.hold.lock();
        if h.armed {
            h.armed = false;
            h.held = true;
            self.hold_changed.notify_all();
            while h.held {
                self.hold_changed.wait(&mut h);
            }
        }
        drop(h);
        for (&slot, page) in slots.iter().zip(pages.chunks_exact(4096)) {
            checks.push(self.write(slot, page)?);
        }
        Ok(())
    }
    fn write(&self, slot: u64, page: &[u8]) -> std::io::Result<u32> {
        if self.down.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::Error::from_raw_os_error(libc::ECONNREFUSED));
        }
        if self.failing.lock().contains(&slot) {
            // A partial write: the slot's old bytes are gone.
            self.pages.lock().insert(slot, vec![0xee; page.len()]);
            return Err(std::io::Error::from_raw_os_error(libc::EFBIG));
        }
        self.pages.lock().insert(slot, page.to_vec());
        Ok(crate::backing::page_check(self.area_id(), slot, page))
    }
    fn read(&self, slot: u64, check: u32, out: &mut [u8]) -> std::io::Result<()> {
        let pages = self.pages.lock();
        match pages.get(&slot) {
            Some(p) if crate::backing::page_check(self.area_id(), slot, p) == check => {
                out.copy_from_slice(p);
                Ok(())
            }
            _ => {
                out.fill(0);
                Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "check failed",
                ))
            }
        }
    }
    fn discard(&self, slots: &[u64]) -> std::io::Result<()> {
        let mut pages = self.pages.lock();
        for s in slots {
            pages.remove(s);
        }
        Ok(())
    }
}
