//! The allocation guard: the fuzz binaries' global allocator, which refuses (and reports)
//! any single allocation above `FUZZ_MAX_ALLOC_MB`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::SEED;

/// The global allocator of every fuzz test binary: [`System`], refusing single allocations
/// above the cap.
pub struct CappedAlloc;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

const DEFAULT_MAX_ALLOC: usize = 512 << 20;
pub(super) static MAX_ALLOC: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_ALLOC);

thread_local! {
    /// The target and case running on this thread (for the refusal message).
    pub(super) static CURRENT: Cell<Option<(&'static str, u64)>> = const { Cell::new(None) };
    /// The largest allocation made on this thread since the last reset.
    pub(super) static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// A fixed buffer for a message formatted without allocating.
struct StackBuf {
    bytes: [u8; 512],
    len: usize,
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

fn allowed(size: usize) -> bool {
    LARGEST.with(|l| l.set(l.get().max(size)));
    if size <= MAX_ALLOC.load(Ordering::Relaxed) {
        return true;
    }
    let mut msg = StackBuf {
        bytes: [0; 512],
        len: 0,
    };
    let (target, case) = CURRENT.with(Cell::get).unwrap_or(("(outside a case)", 0));
    let _ = writeln!(
        msg,
        "\nfuzz: refused an allocation of {size} bytes (cap {} bytes) in target `{target}`, \
         case {case} (seed {:#x}); rerun with FUZZ_ONLY={case} to see the input",
        MAX_ALLOC.load(Ordering::Relaxed),
        SEED.load(Ordering::Relaxed),
    );
    // Straight to fd 2: the test harness's capture would allocate.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), &msg.bytes[..msg.len]);
    false
}

// SAFETY: every call is forwarded to `System` unchanged, except that a refused size returns
// null, which `GlobalAlloc` allows ("the allocation failed").
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if allowed(layout.size()) {
            // SAFETY: the caller's contract is passed on.
            unsafe { System.alloc(layout) }
        } else {
            std::ptr::null_mut()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if allowed(layout.size()) {
            // SAFETY: as above.
            unsafe { System.alloc_zeroed(layout) }
        } else {
            std::ptr::null_mut()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if allowed(new_size) {
            // SAFETY: as above.
            unsafe { System.realloc(ptr, layout, new_size) }
        } else {
            std::ptr::null_mut()
        }
    }
}
