//! Software prefetch: the hot loops know which cache lines they will need a few iterations
//! ahead (candidate codes, filter slots) and ask for them early, so the misses of different
//! queries overlap. The one `unsafe` block is the intrinsic call.

/// Asks the CPU to start loading the cache line holding `value`.
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and changes no memory, and the
    // pointer comes from a live reference.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
