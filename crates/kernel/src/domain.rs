//! Processes that run in a hardware protection domain of their own: the object that stands for
//! a domain's first process here, started through the platform, and how it ends.
//!
//! The domain runs its own kernel (hosted: a sandboxed host process), so this object runs no
//! code: at its start the creator's budget sets aside the domain's memory, the platform starts
//! the domain with the bootstrap channel bridged, and the object ends with the status the domain
//! reports. The domain's CPU time, and the memory its host process holds beyond what was set
//! aside, are charged to the creator's budget as the platform reports them while the domain runs
//! ([`DomainMeter`]), the CPU time in full at its end; once a budget runs out, the domain is
//! killed. A kill kills the domain.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::poll_fn;
use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use nebulet_abi::{Error, ExitReason, Limit, ProcessState};

use crate::budget::Resource;
use crate::handles::HandleEntry;
use crate::kernel::Kernel;
use crate::objects::Object;
use crate::objects::process::{ExitStatus, Process};
use crate::platform::{DomainEnd, DomainRequest, DomainStart};

/// The memory a domain is given, and its creator's budget sets aside, when the creator did not
/// set the process's `memory` limit.
pub(crate) const DOMAIN_DEFAULT_MEMORY: u64 = 64 << 20;

/// The meter of a domain: the platform reports, while the domain runs, the CPU time its host
/// process has used so far and the memory it holds privately (not shared with other processes:
/// the host binary's pages are).
/// - Each increase of the CPU time is charged to the process standing for the domain, and so to
///   its creator's budget.
/// - Memory beyond what was set aside at the start (the runtime and compiled code of the host
///   process, on top of what its kernel gives its processes) is charged to the creator's budget,
///   at its peak, until the process ends.
///
/// A report that finds a budget above out of CPU time, or that cannot charge the memory, ends
/// the process "out of resources", which kills the domain.
#[derive(Clone)]
pub struct DomainMeter {
    process: Arc<Process>,
    /// The memory set aside at the start, in bytes.
    set_aside: u64,
    /// The CPU time charged so far, in nanoseconds.
    cpu_charged: Arc<AtomicI64>,
    /// The memory charged beyond `set_aside` so far, in bytes.
    memory_charged: Arc<AtomicU64>,
}

impl DomainMeter {
    fn new(process: &Arc<Process>, set_aside: u64) -> Self {
        Self {
            process: process.clone(),
            set_aside,
            cpu_charged: Arc::new(AtomicI64::new(0)),
            memory_charged: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The domain's host process has used `cpu_ns` nanoseconds of CPU time since it started,
    /// and holds `private_bytes` of memory of its own now.
    pub fn report(&self, cpu_ns: i64, private_bytes: u64) {
        self.charge_cpu(cpu_ns);
        let beyond = private_bytes.saturating_sub(self.set_aside);
        let before = self.memory_charged.fetch_max(beyond, Ordering::Relaxed);
        // Charged to the creator's budget: the process's own `memory` limit is what was set
        // aside, and the domain's kernel holds its processes to that.
        let creator = self.process.budget.parent().unwrap_or(&self.process.budget);
        if beyond > before {
            match creator.charge(Resource::Memory, beyond - before) {
                Ok(charge) => self.process.hold(charge),
                Err(_) => self.process.kill(ExitReason::OutOfResources),
            }
        }
        if self.process.budget.exhausted(Resource::Cpu) {
            self.process.kill(ExitReason::OutOfResources);
        }
    }

    /// Charges what `total` adds to the CPU time charged.
    fn charge_cpu(&self, total: i64) {
        let before = self.cpu_charged.fetch_max(total, Ordering::Relaxed);
        if total > before {
            self.process.charge_cpu(total - before);
        }
    }
}

impl core::fmt::Debug for DomainMeter {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter
            .debug_struct("DomainMeter")
            .field("set_aside", &self.set_aside)
            .field("cpu_charged", &self.cpu_charged.load(Ordering::Relaxed))
            .field("memory_charged", &self.memory_charged.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Starts `process` (created isolated) in a domain of its own with its bootstrap handle, which
/// must be a channel: `ERR_NOT_SUPPORTED` for another kind, or for a channel that already
/// carries another kind; `ERR_NO_RESOURCES` if the creator's budget cannot set aside the
/// domain's memory. On an error nothing changed and the handle is given back.
pub(crate) fn start(
    kernel: &Arc<Kernel>,
    process: &Arc<Process>,
    bootstrap: Option<HandleEntry>,
) -> Result<(), (Error, Option<HandleEntry>)> {
    let endpoint = match bootstrap.as_ref().map(|entry| &entry.object) {
        None => None,
        Some(Object::Channel(endpoint)) => Some(endpoint.clone()),
        Some(_) => return Err((Error::NotSupported, bootstrap)),
    };
    let budget = &process.budget;
    let memory = match budget.limit(Resource::Memory) {
        u64::MAX => DOMAIN_DEFAULT_MEMORY,
        limit => limit,
    };
    // Checked before anything changes: the memory, and that the process is still unstarted.
    if budget.available(Resource::Memory) < memory {
        return Err((Error::NoResources, bootstrap));
    }
    if process.info().state != ProcessState::Created as u32 {
        return Err((Error::BadState, bootstrap));
    }
    if let Some(endpoint) = &endpoint
        && let Err(error) = endpoint.bridge()
    {
        return Err((error, bootstrap));
    }
    // The entry itself is dropped: the bridge holds the endpoint from now on.
    process.mark_started(None).map_err(|(error, _)| (error, bootstrap))?;
    match budget.charge(Resource::Memory, memory) {
        Ok(charge) => process.hold(charge),
        Err(_) => {
            // Another charge took the room meanwhile: the domain does not start.
            process.finish(ExitStatus::ended(
                ExitReason::OutOfResources,
                Some("cannot start: its creator's budget cannot hold its domain's memory".into()),
            ));
            return Ok(());
        }
    }
    let mut limits: Vec<(Limit, u64)> = Limit::ALL
        .into_iter()
        .filter(|&limit| limit != Limit::MemoryBytes)
        .filter_map(|limit| {
            let value = budget.limit(Resource::of_limit(limit));
            (value != u64::MAX).then_some((limit, value))
        })
        .collect();
    limits.push((Limit::MemoryBytes, memory));
    let request = DomainRequest {
        name: process.name.clone(),
        module: process.module.clone(),
        bootstrap: endpoint.map(crate::ChannelEnd::from_endpoint),
        limits,
        meter: DomainMeter::new(process, memory),
    };
    let meter = request.meter.clone();
    kernel.process_started(process);
    match kernel.platform.start_domain(request) {
        Ok(started) => {
            kernel.platform.spawn(Box::pin(watch(kernel.clone(), process.clone(), started, meter)));
        }
        Err(error) => {
            let status = ExitStatus::ended(
                ExitReason::DomainFault,
                Some(alloc::format!("cannot start its domain: {error}")),
            );
            ended(kernel, process, DomainEnd { status, cpu_ns: 0 }, None, &meter);
        }
    }
    Ok(())
}

/// Waits for the domain to end, or for a kill of the process, which kills the domain first.
async fn watch(
    kernel: Arc<Kernel>,
    process: Arc<Process>,
    started: DomainStart,
    meter: DomainMeter,
) {
    let DomainStart { mut ended, kill } = started;
    let mut kill = Some(kill);
    let mut killed = None;
    let end = poll_fn(|context| {
        if killed.is_none()
            && let Some(reason) = process.poll_kill(context.waker())
        {
            killed = Some(reason);
            if let Some(kill) = kill.take() {
                kill();
            }
        }
        ended.as_mut().poll(context)
    })
    .await;
    self::ended(&kernel, &process, end, killed, &meter);
}

/// The domain ended: the rest of its CPU time is charged, and the process ends as the domain
/// said, or as it was killed.
fn ended(
    kernel: &Kernel,
    process: &Arc<Process>,
    end: DomainEnd,
    killed: Option<ExitReason>,
    meter: &DomainMeter,
) {
    meter.charge_cpu(end.cpu_ns);
    let status = match killed {
        Some(reason) => ExitStatus::ended(reason, None),
        None => end.status,
    };
    kernel.process_ended();
    process.finish(status);
}
