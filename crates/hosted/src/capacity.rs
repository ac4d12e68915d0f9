//! The root budget on Linux: what the host can really give processes, less a margin.
//!
//! - Memory: `MemAvailable` of `/proc/meminfo` (`MemTotal` on kernels without it), less 10 %
//!   and 256 MiB for the host itself (its heap, compiled code, thread stacks).
//! - Mappings: `vm.max_map_count`, less the mappings the host process already has
//!   (`/proc/self/maps`), less 10 % and 4,096 for the host's own (its threads' stacks, the
//!   blocking pool's, compiled modules, allocator arenas).
//! - Address space: each linear memory reserves the engine's reservation and a guard on each
//!   side (4 GiB + 2 × 32 MiB by default) in a user space of `RLIMIT_AS` (when set) or 2^47
//!   bytes, less what the host process already uses and 10 %: so many linear memories fit.
//! - Threads: each is a fiber with a stack of the engine's `async_stack_size`; at most as many
//!   as memory can hold (they are not OS threads, so `RLIMIT_NPROC` does not apply).
//! - With the shared placement, memories and stacks take no mapping of their own, and memory
//!   is multiplied by the engine's overcommit, if any.

use nebulet_kernel::Capacity;

use crate::{EngineOptions, Placement};

/// Memory the host keeps for itself, besides 10 % of what is available.
const HOST_MEMORY_BYTES: u64 = 256 << 20;
/// Mappings the host keeps for itself, besides 10 % of the limit.
const HOST_MAPPINGS: u64 = 4_096;
/// Linux's user address space on x86_64 and aarch64 (four-level page tables).
const USER_ADDRESS_SPACE: u64 = 1 << 47;
/// wasmtime's defaults on 64-bit hosts, for options left unset.
const DEFAULT_RESERVATION: u64 = 4 << 30;
const DEFAULT_GUARD: u64 = 32 << 20;
const DEFAULT_STACK: u64 = 2 << 20;
/// Mappings a linear memory of its own takes (reservation, accessible part, guard), and a
/// thread's fiber stack (the stack and its guard page).
const MEMORY_MAPPINGS: u64 = 3;
const THREAD_MAPPINGS: u64 = 2;
/// Linux's default `vm.max_map_count`, if it cannot be read.
const DEFAULT_MAX_MAP_COUNT: u64 = 65_530;

/// What the host can give, measured now (see the module doc).
pub(crate) fn measure(options: &EngineOptions) -> Capacity {
    measure_with(&Host::facts_but_memory(), options)
}

/// [`measure`] with the facts of `host` but the memory available, which is read now: `host`
/// may come from the process this one was forked from (a domain's zygote), whose mappings and
/// address space are this one's at the fork.
pub(crate) fn measure_with(host: &Host, options: &EngineOptions) -> Capacity {
    let host = Host { meminfo: read("/proc/meminfo"), ..host.clone() };
    host.capacity(options)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The facts [`measure`] reads from the host, apart so they can be tested.
#[derive(Debug, Default, Clone)]
pub(crate) struct Host {
    meminfo: String,
    max_map_count: Option<u64>,
    /// Mappings the host process has now.
    maps: u64,
    /// `RLIMIT_AS`, if set.
    address_space_limit: Option<u64>,
    /// The host process's virtual size now.
    address_space_used: u64,
}

impl Host {
    /// The facts read now, but the memory available (left empty).
    pub(crate) fn facts_but_memory() -> Self {
        Host {
            meminfo: String::new(),
            max_map_count: read("/proc/sys/vm/max_map_count").trim().parse().ok(),
            maps: read("/proc/self/maps").lines().count() as u64,
            address_space_limit: address_space_limit(),
            address_space_used: virtual_size(&read("/proc/self/status")),
        }
    }

    fn capacity(&self, options: &EngineOptions) -> Capacity {
        let available = meminfo_bytes(&self.meminfo, "MemAvailable")
            .or_else(|| meminfo_bytes(&self.meminfo, "MemTotal"))
            .unwrap_or(0);
        let overcommit = u64::from(options.overcommit.unwrap_or(1).max(1));
        let memory_bytes = without_margin(available, HOST_MEMORY_BYTES).saturating_mul(overcommit);
        let max_map_count = self.max_map_count.unwrap_or(DEFAULT_MAX_MAP_COUNT);
        let mappings = without_margin(max_map_count.saturating_sub(self.maps), HOST_MAPPINGS);
        let shared = options.placement == Placement::Shared;
        let per_memory = if shared {
            // A memory's slot is a power of two from 64 KiB: most are small; count the space
            // a 64 KiB slot takes (a larger one is charged its pages by the memory budget).
            1 << 16
        } else {
            options.memory_reservation.unwrap_or(DEFAULT_RESERVATION)
                + 2 * options.memory_guard_size.unwrap_or(DEFAULT_GUARD)
        };
        let space = self.address_space_limit.unwrap_or(USER_ADDRESS_SPACE);
        let free_space = without_margin(space.saturating_sub(self.address_space_used), 0);
        let linear_memories = free_space / per_memory.max(1);
        let stack_bytes = options.async_stack_size.map_or(DEFAULT_STACK, |bytes| bytes as u64);
        Capacity {
            memory_bytes,
            mappings,
            linear_memories,
            threads: memory_bytes / stack_bytes.max(1),
            stack_bytes,
            memory_mappings: if shared { 0 } else { MEMORY_MAPPINGS },
            thread_mappings: if shared { 0 } else { THREAD_MAPPINGS },
        }
    }
}

/// `amount` less 10 % and `reserved`, never below 0.
fn without_margin(amount: u64, reserved: u64) -> u64 {
    (amount - amount / 10).saturating_sub(reserved)
}

/// A `Name:   1234 kB` line of `/proc/meminfo`, in bytes.
fn meminfo_bytes(meminfo: &str, name: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        if key != name {
            return None;
        }
        let mut words = value.split_whitespace();
        let number: u64 = words.next()?.parse().ok()?;
        match words.next() {
            Some("kB") => number.checked_mul(1024),
            None => Some(number),
            Some(_) => None,
        }
    })
}

/// `VmSize` of `/proc/self/status`, in bytes (0 if absent).
fn virtual_size(status: &str) -> u64 {
    meminfo_bytes(status, "VmSize").unwrap_or(0)
}

fn address_space_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::As).current
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       24684084 kB\nMemFree:         1000000 kB\n\
                           MemAvailable:   22986088 kB\nBuffers:          123456 kB\n";

    /// A host with 22 GiB available, the default map count, 430 mappings and 1 GiB used.
    fn typical_host() -> Host {
        Host {
            meminfo: MEMINFO.into(),
            max_map_count: Some(65_530),
            maps: 430,
            address_space_limit: None,
            address_space_used: 1 << 30,
        }
    }

    #[test]
    fn meminfo_lines_parse_in_bytes() {
        assert_eq!(meminfo_bytes(MEMINFO, "MemAvailable"), Some(22_986_088 * 1024));
        assert_eq!(meminfo_bytes(MEMINFO, "MemTotal"), Some(24_684_084 * 1024));
        assert_eq!(meminfo_bytes(MEMINFO, "Mem"), None, "whole names only");
        assert_eq!(meminfo_bytes("HugePages_Total:       0\n", "HugePages_Total"), Some(0));
        assert_eq!(meminfo_bytes("MemTotal: lots kB\n", "MemTotal"), None);
        assert_eq!(virtual_size("Name:\tnebulet\nVmSize:\t  123 kB\n"), 123 * 1024);
    }

    #[test]
    fn the_budget_leaves_the_host_its_margin() {
        let host = typical_host();
        let capacity = host.capacity(&EngineOptions::default());
        let available = 22_986_088 * 1024;
        assert_eq!(capacity.memory_bytes, available - available / 10 - (256 << 20));
        assert_eq!(capacity.mappings, 65_100 - 6_510 - 4_096);
        assert_eq!(capacity.stack_bytes, 2 << 20);
        assert_eq!(capacity.threads, capacity.memory_bytes / (2 << 20));
        // 2^47 bytes less 1 GiB used and 10 %, in memories of 4 GiB and two guards of 32 MiB.
        let free: u64 = (1 << 47) - (1 << 30);
        assert_eq!(capacity.linear_memories, (free - free / 10) / ((4 << 30) + (64 << 20)));
    }

    #[test]
    fn old_kernels_fall_back_to_mem_total_and_the_default_map_count() {
        let host = Host { meminfo: "MemTotal: 1048576 kB\n".into(), ..Host::default() };
        let capacity = host.capacity(&EngineOptions::default());
        assert_eq!(capacity.memory_bytes, (1 << 30) - (1 << 30) / 10 - (256 << 20));
        assert_eq!(capacity.mappings, 65_530 - 6_553 - 4_096);
    }

    #[test]
    fn an_address_space_limit_bounds_the_linear_memories() {
        let options = EngineOptions {
            memory_reservation: Some(1 << 30),
            memory_guard_size: Some(0),
            async_stack_size: Some(256 << 10),
            ..EngineOptions::default()
        };
        let host = Host {
            meminfo: MEMINFO.into(),
            max_map_count: Some(65_530),
            maps: 0,
            address_space_limit: Some(12 << 30),
            address_space_used: 1 << 30,
        };
        let capacity = host.capacity(&options);
        // 11 GiB free, less 10 %: nine memories of 1 GiB.
        assert_eq!(capacity.linear_memories, 9);
        assert_eq!(capacity.stack_bytes, 256 << 10);
        // Nothing left at all: nothing may start.
        let full = Host { address_space_used: 12 << 30, ..host };
        assert_eq!(full.capacity(&options).linear_memories, 0);
    }

    #[test]
    fn the_shared_placement_takes_no_mappings_and_overcommit_scales_memory_only() {
        let host = typical_host();
        let separate = host.capacity(&EngineOptions::default());
        assert_eq!((separate.memory_mappings, separate.thread_mappings), (3, 2));
        let options = EngineOptions {
            placement: Placement::Shared,
            overcommit: Some(4),
            async_stack_size: Some(128 << 10),
            ..EngineOptions::default()
        };
        let shared = host.capacity(&options);
        assert_eq!((shared.memory_mappings, shared.thread_mappings), (0, 0));
        assert_eq!(shared.memory_bytes, 4 * separate.memory_bytes);
        assert_eq!(shared.mappings, separate.mappings, "the host's own mappings still count");
        assert_eq!(shared.threads, shared.memory_bytes / (128 << 10));
        // No overcommit below 1.
        let none = EngineOptions { overcommit: Some(0), ..options };
        assert_eq!(host.capacity(&none).memory_bytes, separate.memory_bytes);
    }
}
