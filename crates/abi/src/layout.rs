//! Structures passed through guest memory, with their exact little-endian layouts.

/// `object_get_info` topic BASIC: 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InfoBasic {
    /// The kernel object id: unique for the kernel's lifetime, shared by all handles to it.
    pub koid: u64,
    /// The [`ObjectType`](crate::ObjectType) as a `u32`.
    pub object_type: u32,
    /// The rights of the handle asked about.
    pub rights: u32,
}

impl InfoBasic {
    /// The size in guest memory.
    pub const SIZE: usize = 16;

    /// The guest-memory encoding.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut bytes = [0; Self::SIZE];
        bytes[0..8].copy_from_slice(&self.koid.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.object_type.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.rights.to_le_bytes());
        bytes
    }

    /// Decodes the guest-memory encoding.
    pub fn from_bytes(bytes: &[u8; Self::SIZE]) -> Self {
        Self { koid: u64_at(bytes, 0), object_type: u32_at(bytes, 8), rights: u32_at(bytes, 12) }
    }
}

/// `object_get_info` topic PROCESS: 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InfoProcess {
    /// The [`ProcessState`](crate::ProcessState) as a `u32`.
    pub state: u32,
    /// The exit code once ended (for reasons other than "exited" it is -1).
    pub exit_code: i32,
    /// The [`ExitReason`](crate::ExitReason) as a `u32`, 0 while not ended.
    pub exit_reason: u32,
    /// How many threads run in the process.
    pub threads: u32,
    /// The size of the process's linear memory in bytes.
    pub memory_bytes: u64,
    /// The CPU time the process has used, in nanoseconds.
    pub cpu_ns: u64,
}

impl InfoProcess {
    /// The size in guest memory.
    pub const SIZE: usize = 32;

    /// The guest-memory encoding.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut bytes = [0; Self::SIZE];
        bytes[0..4].copy_from_slice(&self.state.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.exit_code.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.exit_reason.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.threads.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.memory_bytes.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.cpu_ns.to_le_bytes());
        bytes
    }

    /// Decodes the guest-memory encoding.
    pub fn from_bytes(bytes: &[u8; Self::SIZE]) -> Self {
        Self {
            state: u32_at(bytes, 0),
            exit_code: u32_at(bytes, 4) as i32,
            exit_reason: u32_at(bytes, 8),
            threads: u32_at(bytes, 12),
            memory_bytes: u64_at(bytes, 16),
            cpu_ns: u64_at(bytes, 24),
        }
    }
}

/// `object_get_info` topic BUDGET: 144 bytes. For each resource limit, in the order of
/// [`Limit::ALL`](crate::Limit::ALL) (memory, handles, queued, children, cpu, threads): what the
/// process and its subtree use, the process's own limit, and how much more a charge to the
/// process could take (the least that any budget on the way to the root has left).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InfoBudget {
    /// Used by the process and its subtree, per limit.
    pub used: [u64; 6],
    /// The process's own limit, per limit (`u64::MAX` for none of its own).
    pub limit: [u64; 6],
    /// What a charge to the process could still take, per limit.
    pub available: [u64; 6],
}

impl InfoBudget {
    /// The size in guest memory.
    pub const SIZE: usize = 144;

    /// The guest-memory encoding: per limit, `used`, `limit` and `available`.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut bytes = [0; Self::SIZE];
        for index in 0..6 {
            let at = 24 * index;
            bytes[at..at + 8].copy_from_slice(&self.used[index].to_le_bytes());
            bytes[at + 8..at + 16].copy_from_slice(&self.limit[index].to_le_bytes());
            bytes[at + 16..at + 24].copy_from_slice(&self.available[index].to_le_bytes());
        }
        bytes
    }

    /// Decodes the guest-memory encoding.
    pub fn from_bytes(bytes: &[u8; Self::SIZE]) -> Self {
        let mut budget = Self::default();
        for index in 0..6 {
            budget.used[index] = u64_at(bytes, 24 * index);
            budget.limit[index] = u64_at(bytes, 24 * index + 8);
            budget.available[index] = u64_at(bytes, 24 * index + 16);
        }
        budget
    }
}

/// One item of `object_wait_many`: 12 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WaitItem {
    /// The handle to wait on (needs WAIT).
    pub handle: u32,
    /// The signals to wait for.
    pub wait_for: u32,
    /// Filled by the kernel: the object's signals when the call returned.
    pub pending: u32,
}

impl WaitItem {
    /// The size in guest memory.
    pub const SIZE: usize = 12;

    /// The guest-memory encoding.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut bytes = [0; Self::SIZE];
        bytes[0..4].copy_from_slice(&self.handle.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.wait_for.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.pending.to_le_bytes());
        bytes
    }

    /// Decodes the guest-memory encoding.
    pub fn from_bytes(bytes: &[u8; Self::SIZE]) -> Self {
        Self { handle: u32_at(bytes, 0), wait_for: u32_at(bytes, 4), pending: u32_at(bytes, 8) }
    }
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_round_trip() {
        let basic = InfoBasic { koid: 0x0102_0304_0506_0708, object_type: 5, rights: 0x1ff };
        assert_eq!(InfoBasic::from_bytes(&basic.to_bytes()), basic);
        assert_eq!(basic.to_bytes()[0], 0x08, "little-endian");
        let process = InfoProcess {
            state: 2,
            exit_code: -7,
            exit_reason: 3,
            threads: 1,
            memory_bytes: 65_536,
            cpu_ns: 99,
        };
        assert_eq!(InfoProcess::from_bytes(&process.to_bytes()), process);
        let budget = InfoBudget { used: [1; 6], limit: [2; 6], available: [3, 4, 5, 6, 7, 8] };
        assert_eq!(InfoBudget::from_bytes(&budget.to_bytes()), budget);
        let item = WaitItem { handle: 9, wait_for: 1, pending: 4 };
        assert_eq!(WaitItem::from_bytes(&item.to_bytes()), item);
    }
}
