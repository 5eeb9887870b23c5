//! Software prefetch: the hot loops know which cache lines they will need a few iterations
//! ahead (candidate codes, filter words) and ask for them early, so the misses of different
//! queries overlap. Also where the searches prefetch to, and the CPU cache fact the PDQ search
//! chooses whether to batch by. The `unsafe` block is the intrinsic call.

use std::sync::OnceLock;

/// Asks the CPU to start loading the cache line holding `value` into every cache level.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    prefetch_to::<true, T>(value);
}

/// [`prefetch`] when `L1` is true; else a prefetch into the L2 and outer caches only, which
/// on the cores measured (an Intel Xeon, an AMD Zen 4) leaves more misses in flight where the
/// L1 fill buffers are the limit ([`far_into_l2`]).
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn prefetch_to<const L1: bool, T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and changes no memory, and the
    // pointer comes from a live reference.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _MM_HINT_T1, _mm_prefetch};
        let at = (value as *const T).cast::<i8>();
        if L1 {
            _mm_prefetch::<_MM_HINT_T0>(at);
        } else {
            _mm_prefetch::<_MM_HINT_T1>(at);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// Whether searches that prefetch far more lines than the fill buffers hold should prefetch
/// into L2 ([`prefetch_to`] with `L1 = false`): by default they do. Measured faster on both
/// machines it was tried on, an Intel Xeon and an AMD Zen 4 (PDQ searches and exact filters
/// at 1 M and 10 M: `docs/index-design.md`, "Query at a time", "Exact kinds"); set
/// `HASHSIEVE_PREFETCH_L2=0` for prefetches into L1, to measure a machine that may disagree.
pub(crate) fn far_into_l2() -> bool {
    static CHOICE: OnceLock<bool> = OnceLock::new();
    *CHOICE.get_or_init(|| std::env::var("HASHSIEVE_PREFETCH_L2").as_deref() != Ok("0"))
}

/// The size of the largest, outermost data cache the kernel describes for CPU 0
/// (`/sys/devices/system/cpu/cpu0/cache/index*/`), or `None` where it describes none. In a
/// virtual machine this is the host's cache as the hypervisor reports it.
pub(crate) fn last_level_cache_bytes() -> Option<usize> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    let read = |path: std::path::PathBuf| std::fs::read_to_string(path).ok();
    dir.filter_map(Result::ok)
        .filter_map(|entry| {
            let at = entry.path();
            let kind = read(at.join("type"))?;
            if kind.trim() == "Instruction" {
                return None;
            }
            let level: u32 = read(at.join("level"))?.trim().parse().ok()?;
            Some((level, parse_cache_size(&read(at.join("size"))?)?))
        })
        .max()
        .map(|(_, bytes)| bytes)
}

/// A cache size as sysfs writes it: `491520K`, `32M`, or plain bytes.
fn parse_cache_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let scale = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return None,
    };
    digits.parse::<usize>().ok()?.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cache_sizes_parse_as_sysfs_writes_them() {
        use super::parse_cache_size;
        assert_eq!(parse_cache_size("491520K\n"), Some(491_520 << 10));
        assert_eq!(parse_cache_size("32M"), Some(32 << 20));
        assert_eq!(parse_cache_size("4096"), Some(4096));
        assert_eq!(parse_cache_size("1G"), Some(1 << 30));
        for bad in ["", "K", "12Q", "-1K", "99999999999999999999G"] {
            assert_eq!(parse_cache_size(bad), None, "{bad}");
        }
        // Where the kernel describes caches, the outermost one is at least 4 KiB.
        if let Some(bytes) = super::last_level_cache_bytes() {
            assert!(bytes >= 4096, "{bytes}");
        }
    }
}
