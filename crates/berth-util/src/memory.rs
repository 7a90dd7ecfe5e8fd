//! How the process's allocator gives memory back.

/// Allocations of this size or more get pages of their own (`mmap`), which
/// go back to the system when freed.
const OWN_PAGES_FROM: i32 = 1024 * 1024;
/// Free memory an arena keeps at its top before giving it back. Setting
/// the `mmap` threshold fixes this one too, at glibc's default of 128 KiB
/// unless set: then every 512 KiB read buffer of a pull went back to the
/// system when freed and came back as fresh zeroed pages (page faults)
/// for the next one — 30% more server CPU per pulled byte.
const KEEP_AT_TOP: i32 = 8 * 1024 * 1024;

/// Makes glibc's malloc return large blocks to the system when they are
/// freed, whatever came before. By default glibc raises its `mmap`
/// threshold to the largest block freed so far, so after the first argon2
/// verification (7 MiB) every later one is carved from a heap arena and
/// kept there: +7 MiB of idle RSS after the first login. Call once, before
/// the server starts. An operator's `GLIBC_TUNABLES` wins: with it set,
/// nothing is changed (so other settings can be tried without a rebuild).
pub fn return_large_blocks() {
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // One arena per core, not glibc's eight per core: more add no
        // parallelism and each keeps free memory of its own. A 10-minute
        // soak grew RSS 16-18% with glibc's default, 8.3% with two arenas
        // on two cores.
        let arenas = std::thread::available_parallelism().map_or(2, |n| n.get().min(64)) as i32;
        #[allow(unsafe_code)]
        // SAFETY: `mallopt` only changes a tunable of the allocator, under
        // the allocator's own lock; it touches no memory of ours.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, OWN_PAGES_FROM);
            libc::mallopt(libc::M_TRIM_THRESHOLD, KEEP_AT_TOP);
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// Gives the free memory inside every malloc arena back to the system
/// (`malloc_trim(0)`): the pages of freed blocks in the middle of an arena
/// too, which the trim threshold never returns. glibc keeps those, so
/// without this RSS creeps up under a mix of short-lived buffers of many
/// sizes while the live heap stays flat. Returns how far RSS went down, in
/// bytes (0 when nothing was returned or RSS is unknown). Takes the
/// arenas' locks while it runs: call it from a blocking thread.
pub fn give_back_free_pages() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let before = resident_bytes();
        #[allow(unsafe_code)]
        // SAFETY: `malloc_trim` only walks the allocator's own free lists
        // under its locks and advises the kernel about free pages.
        let returned = unsafe { libc::malloc_trim(0) } == 1;
        if returned {
            if let (Some(before), Some(after)) = (before, resident_bytes()) {
                return before.saturating_sub(after);
            }
        }
    }
    0
}

/// The process's resident set, from `VmRSS` in `/proc/self/status`.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_set_is_read() {
        let rss = resident_bytes().expect("VmRSS in /proc/self/status");
        assert!(rss > 1024 * 1024, "RSS {rss} bytes is implausibly small");
    }

    /// Freed blocks below a live one stay in the arena (the trim threshold
    /// only returns its top); `give_back_free_pages` must return them.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn free_pages_in_the_middle_of_an_arena_go_back() {
        const BLOCK: usize = 64 * 1024; // below glibc's mmap threshold: from the arena
        let mut blocks: Vec<Vec<u8>> = (0..2048).map(|i| vec![i as u8 | 1; BLOCK]).collect();
        // Keep one block in 64, so no freed run reaches the arena's top.
        let kept: Vec<Vec<u8>> = blocks
            .drain(..)
            .enumerate()
            .filter_map(|(i, b)| (i % 64 == 63).then_some(b))
            .collect();
        let returned = give_back_free_pages();
        assert_eq!(kept.len(), 32);
        assert!(
            returned >= 32 * 1024 * 1024,
            "only {returned} bytes of ~124 MiB freed went back"
        );
    }
}
