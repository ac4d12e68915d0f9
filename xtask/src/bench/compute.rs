//! Compute: the same Rust function (`apps/tests/bench/src/compute.rs`, a sieve and a hash over
//! 4 MiB) built for wasm32 and run by Nebulet, and built into this program and run natively.
//! Both at opt-level 3. Also run under the dense engine configuration, where the missing guard
//! regions mean a bounds check on every load and store.

use std::hint::black_box;

use super::nebulet::Nebulet;
use super::{Comparison, Goal, Settings, Side, describe_options, time_loop};

/// The shared source, compiled for the host.
mod shared {
    include!("../../../apps/tests/bench/src/compute.rs");
}

pub fn native(settings: &Settings) -> Result<Side, String> {
    let limit = usize::try_from(settings.compute_limit).map_err(|error| error.to_string())?;
    Side::measure("native: `compute.rs` built into xtask", settings.runs, || {
        Ok(time_loop(settings.compute_runs, || {
            black_box(shared::compute(black_box(limit)));
        }))
    })
}

pub fn compare(
    nebulet: &Nebulet,
    settings: &Settings,
    native: Side,
    operation: &'static str,
) -> Result<Comparison, String> {
    let runs = settings.compute_runs.to_string();
    let limit = settings.compute_limit.to_string();
    let nebulet_side = Side::measure(
        format!("Nebulet: `compute.rs` in wasm, {}", describe_options(nebulet.options())),
        settings.runs,
        || nebulet.bench_case(&["compute", &runs, &limit]),
    )?;
    // The goal is for the default engine; the dense one shows what density costs.
    let goal = (operation == "compute").then_some(Goal::WithinOfNative(1.2));
    Ok(Comparison { operation, nebulet: nebulet_side, linux: native, goal })
}
