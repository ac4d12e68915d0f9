//! The fuzzer's figures: how often each call returned each status, for this process and, in the
//! first process, summed with the reports of its copies.

use nebulet_abi::Error;
use nebulet_abi::calls::{CALLS, Returns};
use nebulet_raw::wasi::ERRNO_MAX;

use crate::wasi::FUNCTIONS;

/// Statuses: OK, then `Error::ALL` in order.
pub const STATUSES: usize = 1 + Error::ALL.len();
/// WASI errnos: 0 to `ERRNO_MAX`.
pub const ERRNOS: usize = ERRNO_MAX as usize + 1;
/// The size of a report message: the call count and every counter, as little-endian u64s.
pub const REPORT_BYTES: usize = 8 * (1 + CALLS.len() * STATUSES + FUNCTIONS.len() * ERRNOS);

/// The status column of a return value; `None` if it is no status of the contract.
fn column(status: i32) -> Option<usize> {
    if status == 0 {
        return Some(0);
    }
    Error::ALL.iter().position(|error| error.code() == status).map(|index| index + 1)
}

fn column_name(column: usize) -> &'static str {
    if column == 0 { "OK" } else { Error::ALL[column - 1].name() }
}

#[derive(Debug, Clone)]
pub struct Tally {
    /// Calls made, of both kinds.
    pub calls: u64,
    /// Per call of `CALLS`, per status column.
    nebulet: [[u64; STATUSES]; CALLS.len()],
    /// Per function of `wasi::FUNCTIONS`, per errno.
    wasi: [[u64; ERRNOS]; FUNCTIONS.len()],
}

impl Tally {
    pub fn new() -> Self {
        Self {
            calls: 0,
            nebulet: [[0; STATUSES]; CALLS.len()],
            wasi: [[0; ERRNOS]; FUNCTIONS.len()],
        }
    }

    /// Counts a status of call `index`; false if the contract does not allow it for that call.
    pub fn nebulet(&mut self, index: usize, status: i32) -> bool {
        self.calls += 1;
        let call = &CALLS[index];
        if call.returns == Returns::Time {
            self.nebulet[index][0] += 1;
            return true;
        }
        match column(status) {
            Some(column) if call.allows(status) => {
                self.nebulet[index][column] += 1;
                true
            }
            _ => false,
        }
    }

    /// Counts an errno of WASI function `index`; false if it is no errno of preview 1.
    pub fn wasi(&mut self, index: usize, errno: i32) -> bool {
        self.calls += 1;
        match usize::try_from(errno) {
            Ok(errno) if errno < ERRNOS => {
                self.wasi[index][errno] += 1;
                true
            }
            _ => false,
        }
    }

    /// The report a copy sends its parent.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(REPORT_BYTES);
        bytes.extend_from_slice(&self.calls.to_le_bytes());
        for count in self.nebulet.iter().flatten().chain(self.wasi.iter().flatten()) {
            bytes.extend_from_slice(&count.to_le_bytes());
        }
        bytes
    }

    /// Adds a copy's report; false if it is not a report.
    pub fn add_report(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() != REPORT_BYTES {
            return false;
        }
        let mut words = bytes.chunks_exact(8).map(|word| {
            u64::from_le_bytes([
                word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
            ])
        });
        self.calls += words.next().unwrap_or(0);
        let counters = self.nebulet.iter_mut().flatten().chain(self.wasi.iter_mut().flatten());
        for (counter, word) in counters.zip(words) {
            *counter += word;
        }
        true
    }

    /// The calls of the table (all but `process_exit`) that never returned `OK`.
    pub fn never_ok(&self) -> Vec<&'static str> {
        CALLS
            .iter()
            .zip(&self.nebulet)
            .filter(|(call, counts)| call.returns != Returns::Never && counts[0] == 0)
            .map(|(call, _)| call.name)
            .collect()
    }

    /// Prints every count, and the number of distinct (call, status) pairs.
    pub fn print(&self, seconds: i64) {
        let mut pairs = 0;
        for (call, counts) in CALLS.iter().zip(&self.nebulet) {
            if call.returns == Returns::Never {
                continue;
            }
            let statuses: Vec<String> = (0..STATUSES)
                .filter(|column| counts[*column] > 0)
                .map(|column| format!("{} {}", column_name(column), counts[column]))
                .collect();
            pairs += statuses.len();
            let total: u64 = counts.iter().sum();
            println!("fuzz: {:<23} {:>9}: {}", call.name, total, statuses.join(", "));
        }
        let mut wasi_pairs = 0;
        for (name, counts) in FUNCTIONS.iter().zip(&self.wasi) {
            let errnos: Vec<String> = (0..ERRNOS)
                .filter(|errno| counts[*errno] > 0)
                .map(|errno| format!("{errno}: {}", counts[errno]))
                .collect();
            wasi_pairs += errnos.len();
            let total: u64 = counts.iter().sum();
            println!("fuzz: {name:<23} {total:>9}: errno {}", errnos.join(", "));
        }
        println!(
            "fuzz: {} calls in {seconds} s, {pairs} distinct (call, status) pairs, {wasi_pairs} \
             distinct (WASI function, errno) pairs",
            self.calls
        );
    }
}
