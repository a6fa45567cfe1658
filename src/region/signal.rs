//! Signal mode ([`FaultMode::Signal`](super::FaultMode::Signal)): a
//! region's faults served in the faulting thread itself, from its `SIGBUS`
//! handler, instead of by a handler thread.
//!
//! The userfaultfd is opened with `UFFD_FEATURE_SIGBUS`: the kernel then
//! queues no fault message and wakes nobody; the access raises `SIGBUS` in
//! the thread that made it, whose handler maps the page (`UFFDIO_COPY`, as
//! a handler thread would) and returns, and the access is retried. No
//! thread switch, no wake-up: on a small VM, where a cross-CPU wake-up costs
//! more than the rest of a fault, that is most of the cost gone (the
//! README has the figures).
//!
//! What it gives up: an access from the kernel to a page not mapped (a
//! `read(2)` into it, a `write(2)` from it) cannot raise a signal and fails
//! with `EFAULT` instead. Programs that hand region memory to syscalls want
//! the default mode.
//!
//! # What the handler may do
//!
//! It runs on the thread's own stack with every signal blocked, and takes
//! the region's `state` lock and the cache's locks as a handler thread
//! does. That is sound because a thread never touches region memory while
//! it holds one of them (the rule of `state` in the module docs, and the
//! cache reads a caller's page outside its locks), so the interrupted code
//! holds none of them; nor is it inside the allocator, which never touches
//! region memory. A panic inside is caught and treated as a fault that
//! could not be served.
//!
//! A `SIGBUS` that is not a fault on a signal-mode region (another mapping,
//! a `kill`) goes to the handler that was installed before, or kills the
//! process as the default action does.

use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

use super::Shared;

/// Signal-mode regions a process may have open at once.
pub const MAX_SIGNAL_REGIONS: usize = 64;

/// One open signal-mode region: its address range and its shared state.
/// `active` counts handlers using `shared` right now, so that closing can
/// wait until none does.
struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
    shared: AtomicPtr<Shared>,
    active: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    shared: AtomicPtr::new(std::ptr::null_mut()),
    active: AtomicUsize::new(0),
};

static SLOTS: [Slot; MAX_SIGNAL_REGIONS] = [EMPTY; MAX_SIGNAL_REGIONS];

/// The action `SIGBUS` had before ours, to pass on what is not ours.
/// Written (under `INSTALL`) only while ours is not installed.
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());

/// Serialises installing the handler and taking slots.
static INSTALL: Mutex<()> = Mutex::new(());

/// Serve faults of `shared`'s region from `SIGBUS`: install the handler if
/// it is not (again: something, faulthandler say, may have replaced it
/// since), and take a slot. Returns the slot, for [`unregister`].
pub(super) fn register(shared: &Shared) -> std::io::Result<usize> {
    let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    install()?;
    let i = SLOTS
        .iter()
        .position(|s| s.shared.load(SeqCst).is_null() && s.end.load(SeqCst) == 0)
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "{MAX_SIGNAL_REGIONS} signal-mode regions are open already"
            ))
        })?;
    let slot = &SLOTS[i];
    slot.start.store(shared.region.addr, SeqCst);
    slot.end
        .store(shared.region.addr + shared.region.len, SeqCst);
    slot.shared
        .store(shared as *const Shared as *mut Shared, SeqCst);
    Ok(i)
}

/// Stop serving the region of slot `i`, once no handler is inside it; the
/// caller may then drop its `Shared`.
pub(super) fn unregister(i: usize) {
    let slot = &SLOTS[i];
    slot.shared.store(std::ptr::null_mut(), SeqCst);
    while slot.active.load(SeqCst) != 0 {
        std::thread::yield_now();
    }
    slot.start.store(0, SeqCst);
    slot.end.store(0, SeqCst);
}

/// Make [`on_sigbus`] the action of `SIGBUS`, keeping the one before it.
fn install() -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid "query"; sigaction(2) with a
    // null new action only reads the current one into `cur`.
    let mut cur: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut cur) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if cur.sa_sigaction == on_sigbus as *const () as usize {
        return Ok(());
    }
    // SAFETY: a zeroed sigaction with our handler, SA_SIGINFO (it takes
    // three arguments) and every signal blocked while it runs.
    let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
    ours.sa_sigaction = on_sigbus as *const () as usize;
    ours.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    // SAFETY: sigfillset fills the mask of our own struct.
    unsafe { libc::sigfillset(&mut ours.sa_mask) };
    // The previous action lives as long as the process: a handler may read
    // it at any time.
    let previous = Box::into_raw(Box::new(cur));
    let old = PREVIOUS.swap(previous, SeqCst);
    // SAFETY: installs a valid action; the old one is already in `cur`.
    if unsafe { libc::sigaction(libc::SIGBUS, &ours, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // A previous action replaced: it may still be read by a handler that
    // started before, so it is leaked rather than freed (a few bytes, once
    // per reinstall).
    let _ = old;
    Ok(())
}

/// Whether the fault at `ctx` was a write, from the page-fault error code
/// the kernel puts in the signal frame (x86-64: bit 1 of `REG_ERR`), and
/// whether the page was present (bit 0: a write-protect fault). Elsewhere:
/// `None`, and the region tells the two apart by what it has mapped.
fn fault_kind(ctx: *mut c_void) -> Option<(bool, bool)> {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        // SAFETY: for SA_SIGINFO handlers the kernel passes a ucontext_t.
        let uc = unsafe { &*(ctx as *const libc::ucontext_t) };
        let err = uc.uc_mcontext.gregs[libc::REG_ERR as usize] as u64;
        Some((err & 2 != 0, err & 1 != 0))
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        let _ = ctx;
        None
    }
}

/// Serve a fault at `addr` if it is in a signal-mode region; whether it
/// was (the access may then be retried).
fn serve(addr: usize, ctx: *mut c_void) -> bool {
    for slot in &SLOTS {
        if !(slot.start.load(SeqCst) <= addr && addr < slot.end.load(SeqCst)) {
            continue;
        }
        slot.active.fetch_add(1, SeqCst);
        let shared = slot.shared.load(SeqCst);
        let served = if shared.is_null() {
            false
        } else {
            // SAFETY: a non-null pointer in a slot is a live `Shared`:
            // `unregister` nulls it and waits for `active` to drop to zero
            // before the region lets it go, and we counted ourselves in
            // `active` before loading it.
            let shared = unsafe { &*shared };
            // A panic must not unwind out of a signal handler. Caught, the
            // locks are released by their guards, and the fault counts as
            // not served: the process ends with SIGBUS, so no half-done
            // state of the region is seen again.
            let serve = std::panic::AssertUnwindSafe(|| shared.serve_signal(addr, fault_kind(ctx)));
            std::panic::catch_unwind(serve).unwrap_or(false)
        };
        slot.active.fetch_sub(1, SeqCst);
        return served;
    }
    false
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    if code == libc::BUS_ADRERR && serve(addr, ctx) {
        return;
    }
    pass_on(sig, info, ctx);
}

/// A `SIGBUS` that is not ours to serve: to the previous handler, or the
/// default action (the process ends with `SIGBUS`).
fn pass_on(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let previous = PREVIOUS.load(SeqCst);
    if !previous.is_null() {
        // SAFETY: PREVIOUS points to a sigaction leaked for the process's
        // life (see `install`).
        let prev = unsafe { &*previous };
        let handler = prev.sa_sigaction;
        if handler == libc::SIG_IGN {
            return;
        }
        if handler != libc::SIG_DFL {
            if prev.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: an SA_SIGINFO handler takes these three arguments.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) =
                    unsafe { std::mem::transmute(handler) };
                f(sig, info, ctx);
            } else {
                // SAFETY: a plain handler takes the signal number.
                let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
                f(sig);
            }
            return;
        }
    }
    // The default action: for a fault, returning retries the access, which
    // faults again and ends the process; for a sent signal, send it again.
    // SAFETY: signal(2) and raise(3) are async-signal-safe.
    unsafe {
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
        // SAFETY: as above.
        if (*info).si_code != libc::BUS_ADRERR {
            libc::raise(libc::SIGBUS);
        }
    }
}
