//! Shared by every fuzz target: an allocator that refuses any single allocation above
//! [`MALLOC_LIMIT`], as libFuzzer's `-malloc_limit_mb` would.
//!
//! libFuzzer enforces `-malloc_limit_mb` through the sanitizers' malloc hooks, and the targets
//! are built without a sanitizer (that is what lets them build on stable Rust), so the flag
//! alone does nothing here. A refused allocation makes `Vec::with_capacity` and friends abort
//! with "memory allocation of N bytes failed", which libFuzzer reports as a crash and saves
//! the input; code that uses `try_reserve` sees an ordinary error, as it would on a real
//! allocation failure. Targets link this with `use fjord_fuzz as _;`.

use std::alloc::{GlobalAlloc, Layout, System};

/// The largest single allocation a target may make (the run's `-malloc_limit_mb`, 512 MiB).
pub const MALLOC_LIMIT: usize = 512 << 20;

pub struct CappedAlloc;

// SAFETY: every call is forwarded to the system allocator unchanged, or refused with null
// (which `GlobalAlloc` allows for any allocation that cannot be satisfied).
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MALLOC_LIMIT {
            return std::ptr::null_mut();
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MALLOC_LIMIT {
            return std::ptr::null_mut();
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MALLOC_LIMIT {
            return std::ptr::null_mut();
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;
