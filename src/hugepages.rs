//! Large blocks on transparent huge pages: the system allocator, with every block of 8 MiB and
//! more advised `MADV_HUGEPAGE` before it is touched (Linux; elsewhere, and where the kernel's
//! THP mode is `never`, the advice does nothing).
//!
//! A PDQ range search reads a few codes and id runs at random across hundreds of megabytes:
//! on 4 KiB pages nearly every read misses the TLB, which is what separates machines whose
//! page walks are slow (`docs/index-design.md`, "Huge pages"). Most kernels ship THP in
//! `madvise` mode, so memory gets 2 MiB pages only when asked. Only large blocks are advised
//! (the index's tables, the set's bytes): small ones would gain nothing and fragment the
//! address space. Hand-written because no allocator crate advises only large blocks
//! (jemalloc's `thp:always` changes every allocation, and the allocator with it).
//!
//! The binary installs it (`src/main.rs`); benches that measure the index do too.
//! `HASHSIEVE_HUGE_PAGES=0` turns the advice off (machines differ: measure both,
//! `docs/benchmarks.md`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether large blocks are advised (on unless turned off at start).
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the advice on or off for blocks allocated from now on.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Reads `HASHSIEVE_HUGE_PAGES` (`0` turns the advice off); called once at start, before
/// the large blocks (the allocator itself cannot read the environment: that allocates).
pub fn configure_from_env() {
    if std::env::var_os("HASHSIEVE_HUGE_PAGES").is_some_and(|v| v == "0") {
        set_enabled(false);
    }
}

/// Blocks of at least this many bytes are advised.
const ADVISED_FROM: usize = 8 << 20;

/// A huge page on x86-64 and aarch64 (4 KiB base pages).
#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;

/// The system allocator, with large blocks advised onto huge pages.
pub struct HugePageAdvice;

// SAFETY (the `unsafe impl` and the calls below): every allocation is the system allocator's,
// passed through unchanged; the only addition is `madvise`, which changes no memory contents
// and is given only whole 2 MiB pages inside the block just returned.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for HugePageAdvice {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        advise(q, new_size);
        q
    }
}

/// Advises the whole 2 MiB pages of the block at `p` (`len` bytes), when it is large.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn advise(p: *mut u8, len: usize) {
    if p.is_null() || len < ADVISED_FROM || !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let start = (p as usize).next_multiple_of(HUGE_PAGE);
    let end = (p as usize + len) / HUGE_PAGE * HUGE_PAGE;
    if end > start {
        // An error (THP compiled out, say) leaves the block on small pages: nothing to do.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_p: *mut u8, _len: usize) {}

#[cfg(test)]
mod tests {
    #[test]
    fn large_blocks_are_usable_and_small_ones_untouched() {
        // The allocator's contract is the system's: contents kept across a reallocation,
        // zeroed blocks zero. (Whether the kernel gave huge pages is its business.)
        use std::alloc::{GlobalAlloc, Layout};
        let a = super::HugePageAdvice;
        #[allow(unsafe_code)]
        unsafe {
            let layout = Layout::from_size_align(super::ADVISED_FROM * 2, 64).unwrap();
            let p = a.alloc_zeroed(layout);
            assert!(!p.is_null());
            assert!(
                std::slice::from_raw_parts(p, layout.size())
                    .iter()
                    .all(|&b| b == 0)
            );
            p.add(12_345).write(7);
            let q = a.realloc(p, layout, layout.size() * 2);
            assert_eq!(q.add(12_345).read(), 7);
            a.dealloc(q, Layout::from_size_align(layout.size() * 2, 64).unwrap());
            let small = Layout::from_size_align(100, 8).unwrap();
            let s = a.alloc(small);
            assert!(!s.is_null());
            a.dealloc(s, small);
        }
    }
}
