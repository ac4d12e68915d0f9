//! Erlang's BEAM beside Nebulet and Linux: process spawn+exit, message round trip and memory per
//! idle process, measured by a small escript in the same run, when `escript` is installed
//! (Debian's `erlang-base`); the table says so when it is not.

use std::process::Command;

use serde_json::{Value, json};

use super::{output_directory, progress};

/// The escript: one case per run, printing one line of figures.
const SCRIPT: &str = r#"#!/usr/bin/env escript
%%! +P 4000000
-mode(compile).
main([Case, Count]) -> run(Case, list_to_integer(Count)).

nanoseconds() -> erlang:monotonic_time(nanosecond).

spawns(0) -> ok;
spawns(K) ->
    {Pid, Ref} = spawn_monitor(fun() -> ok end),
    receive {'DOWN', Ref, process, Pid, _} -> ok end,
    spawns(K - 1).

pong() -> receive {From, X} -> From ! X + 1, pong(); stop -> ok end.

pings(_, 0, X) -> X;
pings(Pong, K, X) -> Pong ! {self(), X}, receive Y -> pings(Pong, K - 1, Y) end.

rss_kib() ->
    Status = os:cmd("cat /proc/" ++ os:getpid() ++ "/status"),
    [Line] = [L || L <- string:split(Status, "\n", all), string:prefix(L, "VmRSS:") =/= nomatch],
    [_, Kib | _] = string:lexemes(Line, " \t"),
    list_to_integer(Kib).

run("spawn", N) ->
    spawns(N div 10),
    T0 = nanoseconds(), spawns(N), T1 = nanoseconds(),
    io:format("spawn ~B ~B~n", [N, T1 - T0]);
run("roundtrip", N) ->
    Pong = spawn(fun pong/0),
    pings(Pong, N div 10, 0),
    T0 = nanoseconds(), pings(Pong, N, 0), T1 = nanoseconds(),
    Pong ! stop,
    io:format("roundtrip ~B ~B~n", [N, T1 - T0]);
run("idle", N) ->
    erlang:garbage_collect(),
    M0 = erlang:memory(total), R0 = rss_kib(),
    T0 = nanoseconds(),
    Pids = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, N)],
    T1 = nanoseconds(),
    M1 = erlang:memory(total), R1 = rss_kib(),
    io:format("idle ~B ~B ~B ~B~n", [length(Pids), M1 - M0, R1 - R0, T1 - T0]).
"#;

/// BEAM's figures, or why there are none.
#[derive(Debug, Clone, Default)]
pub struct Beam {
    /// `erl`'s OTP release, if it ran.
    pub release: Option<String>,
    pub spawn_ns: Option<f64>,
    pub round_trip_ns: Option<f64>,
    /// Idle processes: how many, bytes each by `erlang:memory(total)`, KiB of RSS each, and
    /// microseconds each to start.
    pub idle: Option<(u64, f64, f64, f64)>,
    /// Why something is missing.
    pub note: Option<String>,
}

impl Beam {
    /// Runs each case `runs` times (the median is kept); `idle` processes for the memory case.
    pub fn measure(runs: usize, spawns: u64, round_trips: u64, idle: u64) -> Beam {
        let release = Command::new("erl")
            .args([
                "-noshell",
                "-eval",
                "io:format(\"~s\", [erlang:system_info(otp_release)]), halt().",
            ])
            .output();
        let release = match release {
            Ok(output) if output.status.success() => {
                String::from_utf8_lossy(&output.stdout).trim().to_string()
            }
            _ => {
                let note = "Erlang is not installed (`apt-get install erlang-base`): no BEAM \
                            column";
                progress(note);
                return Beam { note: Some(note.into()), ..Beam::default() };
            }
        };
        progress(&format!("  BEAM (OTP {release})"));
        let mut beam = Beam { release: Some(release), ..Beam::default() };
        let script = match write_script() {
            Ok(script) => script,
            Err(error) => return Beam { note: Some(error), ..beam },
        };
        let case = |name: &str, count: u64| -> Result<Vec<f64>, String> {
            let output = Command::new("escript")
                .arg(&script)
                .args([name, &count.to_string()])
                .output()
                .map_err(|error| format!("cannot run escript: {error}"))?;
            let text = String::from_utf8_lossy(&output.stdout);
            let line = text.lines().find(|line| line.starts_with(name)).ok_or_else(|| {
                format!("BEAM {name}: no result ({})", String::from_utf8_lossy(&output.stderr))
            })?;
            Ok(line.split_whitespace().skip(1).filter_map(|word| word.parse().ok()).collect())
        };
        let median_per_op = |name: &str, count: u64| -> Result<f64, String> {
            let mut samples = Vec::new();
            for _ in 0..runs {
                let figures = case(name, count)?;
                samples.push(figures[1] / figures[0]);
            }
            samples.sort_by(f64::total_cmp);
            Ok(samples[samples.len() / 2])
        };
        let mut errors = Vec::new();
        match median_per_op("spawn", spawns) {
            Ok(ns) => beam.spawn_ns = Some(ns),
            Err(error) => errors.push(error),
        }
        match median_per_op("roundtrip", round_trips) {
            Ok(ns) => beam.round_trip_ns = Some(ns),
            Err(error) => errors.push(error),
        }
        match case("idle", idle) {
            Ok(figures) if figures.len() == 4 => {
                let count = figures[0].max(1.0);
                beam.idle = Some((
                    figures[0] as u64,
                    figures[1] / count,
                    figures[2] / count,
                    figures[3] / count / 1e3,
                ));
            }
            Ok(figures) => errors.push(format!("BEAM idle: unexpected figures {figures:?}")),
            Err(error) => errors.push(error),
        }
        if !errors.is_empty() {
            beam.note = Some(errors.join("; "));
        }
        beam
    }

    pub fn to_json(&self) -> Value {
        json!({
            "otp_release": self.release,
            "spawn_ns": self.spawn_ns,
            "round_trip_ns": self.round_trip_ns,
            "idle": self.idle.map(|(count, bytes, kib, microseconds)| json!({
                "processes": count,
                "bytes_each_erlang_memory": bytes,
                "rss_kib_each": kib,
                "start_microseconds_each": microseconds,
            })),
            "note": self.note,
        })
    }
}

fn write_script() -> Result<std::path::PathBuf, String> {
    let path = output_directory()?.join("beam.escript");
    std::fs::write(&path, SCRIPT).map_err(|error| format!("{}: {error}", path.display()))?;
    Ok(path)
}
