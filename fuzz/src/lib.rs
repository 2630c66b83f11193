//! What the fuzz targets share: a counting global allocator and the allocation bound every target
//! asserts, "no allocation beyond the frame size" (issue #18), made measurable.
//!
//! Every allocation the process makes goes through [`Counting`], which keeps the bytes live now and
//! the highest that figure reached. [`bounded`] runs one decode, its result kept alive until the
//! check, and asserts that the peak of live bytes above what was live before stayed within
//! `factor × input length + slack`. A decoder that trusts a length prefix (`Vec::with_capacity` of
//! 2^31 elements) fails it at once; one whose memory is the data it decoded passes.
//!
//! The factor is per target, because a decoded value is bigger than its encoding by a ratio its
//! types fix: each target's constant names its worst case. The slack covers fixed-size state that
//! does not grow with the input (decompressor windows, a `Vec`'s first capacity).
//!
//! Allocations that libFuzzer or C libraries make with `malloc` directly are not counted here; the
//! Makefile's runs add `-malloc_limit_mb` so one huge `malloc` anywhere fails the run too.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering::Relaxed},
};

/// The allocator that counts: bytes live and their peak.
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

fn grew(size: usize) {
    let now = LIVE.fetch_add(size, Relaxed) + size;
    PEAK.fetch_max(now, Relaxed);
    LARGEST.fetch_max(size, Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as the new block allocated before the old one is freed: the peak a copying
            // realloc really has.
            grew(new_size);
            LIVE.fetch_sub(layout.size(), Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The bound for an input of `len` bytes.
pub fn bound(len: usize, factor: usize, slack: usize) -> usize {
    len.saturating_mul(factor).saturating_add(slack)
}

/// Runs `decode` and asserts that the bytes it allocated and still held at its peak stayed within
/// [`bound`]`(len, factor, slack)`. Returns what `decode` returned.
pub fn bounded<R>(
    what: &str,
    len: usize,
    factor: usize,
    slack: usize,
    decode: impl FnOnce() -> R,
) -> R {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    LARGEST.store(0, Relaxed);
    let out = decode();
    let peak = PEAK.load(Relaxed).saturating_sub(base);
    let largest = LARGEST.load(Relaxed);
    let limit = bound(len, factor, slack);
    assert!(
        peak <= limit,
        "{what}: decoding {len} bytes held {peak} bytes at its peak (largest single allocation \
         {largest}), over the bound {limit} = {factor} x {len} + {slack}"
    );
    out
}

/// Recomputes the CRC-32C of every whole v2 batch in `records` in place, so that mutated batches
/// get past the checksum to the code behind it (a broker would have stored them with a valid one).
pub fn fix_batch_crcs(records: &mut [u8]) {
    let mut at = 0usize;
    while records.len() - at >= 21 {
        let length = i32::from_be_bytes([
            records[at + 8],
            records[at + 9],
            records[at + 10],
            records[at + 11],
        ]);
        let Some(end) = usize::try_from(length)
            .ok()
            .and_then(|l| (at + 12).checked_add(l))
            .filter(|&end| end <= records.len() && end >= at + 21)
        else {
            return;
        };
        if records[at + 16] == 2 {
            let crc = crc32c::crc32c(&records[at + 21..end]);
            records[at + 17..at + 21].copy_from_slice(&crc.to_be_bytes());
        }
        at = end;
    }
}
