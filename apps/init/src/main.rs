//! `init`: the first process, and the supervisor of the apps it starts.
//!
//! Reads the system image from its bootstrap channel, then runs the manifest's directives in
//! order (see [`nebulet_abi::bootstrap`] for the format):
//! - `service NAME` starts the app and waits (up to 5 s) for its READY message before the next
//!   line; a service that does not get ready (after any restarts its policy allows) is an error:
//!   init stops everything and exits 1;
//! - `start NAME` starts the app as a task.
//!
//! Each app gets the image (without the manifest) on a channel of its own as its bootstrap
//! handle, and the resource limits of its line (`memory=`, `handles=`, ... set with
//! `process_set_limit` before it starts). An app with `domain=isolated` runs in a hardware
//! protection domain of its own (`process_create_with`); since modules do not cross into a
//! domain, its image is empty (no modules).
//!
//! **Supervision.** When an app ends, init prints how (`init: NAME exited with code 0`,
//! `init: NAME ended: watchdog (code -1)`, ...) and applies the line's `restart=` policy:
//! `never` (the default) leaves it ended, `on-failure` restarts it after any end but exit code 0,
//! `always` after every end. A restart is a fresh process of the same module with the same limits
//! and the same bootstrap protocol; a restarted service must report READY again. If the app was
//! already restarted `COUNT` times within the last `WINDOW` (`restarts=COUNT/WINDOW`, default
//! `3/10s`), init gives up on it instead (`init: NAME restarted COUNT times in WINDOW, giving
//! up`) and counts it as failed.
//!
//! **The end.** When the final run of every task has ended, init kills the services that still
//! run and exits 0 if every task's final run exited with code 0 and no task was given up on,
//! else 1. Only tasks decide the exit code: a service that ends, or that init gives up on, is
//! reported but does not make the system fail (the tasks that need it fail if it matters).

use std::time::Duration;

use nebulet_abi::bootstrap::{END, READY, Restart, Role, Seconds, parse_manifest};
use nebulet_abi::{PROCESS_CREATE_ISOLATED, WAIT_MANY_MAX_ITEMS};
use sip::bootstrap::Image;
use sip::{
    Channel, DEADLINE_INFINITE, Error, InfoProcess, InfoProcessExt, Limit, Module, Process,
    Signals, WaitItem, clock,
};

/// How long a service has to report READY.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a killed service has to end.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// An app of the manifest: its line's settings and its current (or last) run.
struct App {
    name: String,
    role: Role,
    restart: Restart,
    /// At most this many restarts within `restart_window` nanoseconds.
    restart_count: u32,
    restart_window: u64,
    limits: Vec<(Limit, u64)>,
    /// Whether it runs in a domain of its own (`domain=isolated`).
    isolated: bool,
    /// When it was restarted (monotonic ns), within the last window.
    recent_restarts: Vec<i64>,
    /// How many times it was restarted in all.
    restarts: u32,
    /// Whether init gave up restarting it.
    gave_up: bool,
    /// The current run, or the last one; `None` before the first start.
    run: Option<Run>,
}

/// One process of an app.
struct Run {
    process: Process,
    /// Init's end of the child's bootstrap channel, kept open while the child runs.
    channel: Channel,
    /// How it ended, once it has.
    ended: Option<InfoProcess>,
}

impl App {
    fn is_service(&self) -> bool {
        self.role == Role::Service
    }

    fn is_running(&self) -> bool {
        self.run.as_ref().is_some_and(|run| run.ended.is_none())
    }

    /// How its last run ended, if it has.
    fn ended(&self) -> Option<InfoProcess> {
        self.run.as_ref().and_then(|run| run.ended)
    }

    /// Whether its policy restarts it after a run that ended as `info` says.
    fn wants_restart(&self, info: &InfoProcess) -> bool {
        match self.restart {
            Restart::Never => false,
            Restart::OnFailure => !info.succeeded(),
            Restart::Always => true,
        }
    }

    /// Records a restart at `now`, or `false` if the restart limit forbids one.
    fn allow_restart(&mut self, now: i64) -> bool {
        let window = i64::try_from(self.restart_window).unwrap_or(i64::MAX);
        self.recent_restarts.retain(|&at| now.saturating_sub(at) < window);
        if self.recent_restarts.len() >= self.restart_count as usize {
            return false;
        }
        self.recent_restarts.push(now);
        self.restarts += 1;
        true
    }
}

/// How a start went.
enum Started {
    /// Running (and for a service, ready).
    Running,
    /// A service that ended, or was killed after `READY_TIMEOUT`, before it was ready.
    NotReady { info: InfoProcess, why: String },
}

/// Everything init started, so a failure can stop it all.
#[derive(Default)]
struct Init {
    apps: Vec<App>,
}

fn main() {
    let mut init = Init::default();
    let code = match init.run() {
        Ok(code) => code,
        Err(message) => {
            println!("init: {message}");
            init.kill_all();
            1
        }
    };
    sip::process::exit(code);
}

impl Init {
    fn run(&mut self) -> Result<i32, String> {
        let bootstrap = sip::process::bootstrap_channel().ok_or("no bootstrap channel: init is started by `nebulet demo`, which hands it the image")?;
        let image = Image::receive(&bootstrap)
            .map_err(|error| format!("cannot read the image: {error}"))?;
        let manifest = image.manifest().ok_or("the image has no manifest")?;
        let directives = match parse_manifest(manifest).collect::<Result<Vec<_>, _>>() {
            Ok(directives) => directives,
            Err(error) => return Err(error.to_string()),
        };
        let names: Vec<&str> = image.names().collect();
        println!("init: image with {} apps: {}", names.len(), names.join(", "));
        for directive in &directives {
            if image.module(directive.name).is_none() {
                return Err(format!(
                    "the manifest names {}, which is not in the image",
                    directive.name
                ));
            }
        }

        for directive in directives {
            let (restart_count, restart_window) = directive.restart_limit();
            self.apps.push(App {
                name: directive.name.to_owned(),
                role: directive.role,
                restart: directive.restart(),
                restart_count,
                restart_window,
                limits: directive.limits().collect(),
                isolated: directive.is_isolated(),
                recent_restarts: Vec::new(),
                restarts: 0,
                gave_up: false,
                run: None,
            });
            let index = self.apps.len() - 1;
            let started = self.start(&image, index)?;
            let app = &self.apps[index];
            match (app.role, started) {
                (Role::Task, _) => println!("init: started {}", app.name),
                (Role::Service, Started::Running) => {
                    println!("init: started service {}", app.name);
                }
                (Role::Service, Started::NotReady { why, .. }) if app.restart == Restart::Never => {
                    return Err(format!("service {} {why}", app.name));
                }
                (Role::Service, Started::NotReady { info, why }) => {
                    // Restart it as its policy allows, but the lines after it need it ready.
                    self.ended(&image, index, info, &why)?;
                    let app = &self.apps[index];
                    if !app.is_running() {
                        return Err(format!("service {} did not get ready", app.name));
                    }
                    println!("init: started service {}", app.name);
                }
            }
        }

        self.supervise(&image)?;
        self.stop_services();

        let tasks: Vec<&App> = self.apps.iter().filter(|app| !app.is_service()).collect();
        let failed = tasks
            .iter()
            .filter(|app| app.gave_up || !app.ended().is_some_and(|info| info.succeeded()))
            .count();
        let plural = if tasks.len() == 1 { "" } else { "s" };
        println!("init: all {} task{plural} done", tasks.len());
        if failed == 0 {
            Ok(0)
        } else {
            println!("init: {failed} of {} task{plural} failed", tasks.len());
            Ok(1)
        }
    }

    /// Starts a new run of app `index`: a fresh process of its module with its limits and a
    /// new channel carrying the image; for a service, waits for its READY message.
    fn start(&mut self, image: &Image, index: usize) -> Result<Started, String> {
        let app = &mut self.apps[index];
        let name = app.name.as_str();
        let context = |what: &str, error: Error| format!("cannot start {name}: {what}: {error}");
        let module: &Module = image.module(name).ok_or(format!("no app {name} in the image"))?;
        let (ours, theirs) = Channel::create().map_err(|error| context("channel_create", error))?;
        // Queue the whole image before the child runs, so a child that never reads it or exits
        // at once cannot make the sending fail.
        let sent = if app.isolated {
            // Modules cannot cross into a domain: an empty image.
            ours.write(END, Vec::new()).map_err(|failed| failed.error)
        } else {
            image.send(&ours)
        };
        sent.map_err(|error| context("sending the image", error))?;
        let options = if app.isolated { PROCESS_CREATE_ISOLATED } else { 0 };
        let process = Process::create_with(module, name, options)
            .map_err(|error| context("process_create_with", error))?;
        for &(limit, value) in &app.limits {
            process
                .set_limit(limit, value)
                .map_err(|error| context(&format!("setting the {} limit", limit.key()), error))?;
        }
        process
            .start(Some(theirs.into_handle()))
            .map_err(|failed| context("process_start", failed.error))?;
        app.run = Some(Run { process, channel: ours, ended: None });
        if app.is_service() { self.wait_ready(index) } else { Ok(Started::Running) }
    }

    /// Waits for the READY message of service `index`'s current run.
    fn wait_ready(&mut self, index: usize) -> Result<Started, String> {
        let app = &mut self.apps[index];
        let run = app.run.as_mut().ok_or("no service to wait for")?;
        let deadline = clock::deadline_after(READY_TIMEOUT);
        loop {
            match run.channel.read_blocking(deadline) {
                Ok(message) if message.bytes == READY => return Ok(Started::Running),
                // Not part of the protocol: ignore it.
                Ok(_) => {}
                Err(Error::TimedOut) => {
                    let why = format!("not ready after {} s", READY_TIMEOUT.as_secs());
                    // It may have ended meanwhile; either way, wait for its end.
                    let _ = run.process.kill();
                    let info = run
                        .process
                        .wait_terminated(clock::deadline_after(KILL_TIMEOUT))
                        .map_err(|error| format!("service {} did not end: {error}", app.name))?;
                    run.ended = Some(info);
                    return Ok(Started::NotReady { info, why });
                }
                Err(Error::PeerClosed) => {
                    let info =
                        run.process.wait_terminated(clock::deadline_after(KILL_TIMEOUT)).map_err(
                            |error| format!("service {} closed its channel ({error})", app.name),
                        )?;
                    run.ended = Some(info);
                    let why = format!("{} before it was ready", info.describe());
                    return Ok(Started::NotReady { info, why });
                }
                Err(error) => return Err(format!("waiting for service {}: {error}", app.name)),
            }
        }
    }

    /// Handles the end of app `index`'s current run (`info`; `why` says how, for messages):
    /// reports it, then restarts the app as its policy and restart limit allow, until a run is
    /// running (and for a service, ready) or init gives up or the policy says no.
    fn ended(
        &mut self,
        image: &Image,
        index: usize,
        mut info: InfoProcess,
        why: &str,
    ) -> Result<(), String> {
        let mut why = why.to_owned();
        // Restarts that never got ready in a row: counted apart from the window, since each
        // waits READY_TIMEOUT and a slow failure could otherwise stay under any window forever.
        let mut unready_starts: u32 = 0;
        loop {
            let app = &mut self.apps[index];
            println!("init: {} {why}", app.name);
            if !app.wants_restart(&info) {
                return Ok(());
            }
            if unready_starts >= app.restart_count.max(1) {
                app.gave_up = true;
                println!(
                    "init: {} did not get ready in {unready_starts} restarts, giving up",
                    app.name
                );
                return Ok(());
            }
            if !app.allow_restart(clock::monotonic()) {
                app.gave_up = true;
                let count = app.restart_count;
                println!(
                    "init: {} restarted {count} time{} in {}, giving up",
                    app.name,
                    if count == 1 { "" } else { "s" },
                    Seconds(app.restart_window)
                );
                return Ok(());
            }
            println!("init: restarting {} (restart {})", app.name, app.restarts);
            match self.start(image, index)? {
                Started::Running => return Ok(()),
                Started::NotReady { info: next, why: next_why } => {
                    unready_starts += 1;
                    info = next;
                    why = next_why;
                }
            }
        }
    }

    /// Waits until the final run of every task has ended, reporting each end (of services
    /// too) and restarting apps as their policies say.
    fn supervise(&mut self, image: &Image) -> Result<(), String> {
        const MAX: usize = WAIT_MANY_MAX_ITEMS as usize;
        loop {
            let running = |service: bool| {
                self.apps
                    .iter()
                    .enumerate()
                    .filter(move |(_, app)| app.is_service() == service && app.is_running())
                    .map(|(index, _)| index)
            };
            // Tasks first: they decide when init is done; services are supervised alongside.
            let mut watched: Vec<usize> = running(false).take(MAX).collect();
            if watched.is_empty() {
                return Ok(());
            }
            let room = MAX - watched.len();
            watched.extend(running(true).take(room));
            let mut items: Vec<WaitItem> = watched
                .iter()
                .filter_map(|&index| self.apps[index].run.as_ref())
                .map(|run| WaitItem::new(&run.process, Signals::TERMINATED))
                .collect();
            sip::wait_many(&mut items, DEADLINE_INFINITE)
                .map_err(|error| format!("waiting for the tasks: {error}"))?;
            let ended: Vec<usize> = items
                .iter()
                .zip(&watched)
                .filter(|(item, _)| item.is_pending(Signals::TERMINATED))
                .map(|(_, &index)| index)
                .collect();
            for index in ended {
                let app = &mut self.apps[index];
                let Some(run) = app.run.as_mut() else { continue };
                let info = run
                    .process
                    .info()
                    .map_err(|error| format!("cannot inspect {}: {error}", app.name))?;
                run.ended = Some(info);
                self.ended(image, index, info, &info.describe())?;
            }
        }
    }

    /// Kills the services still running and waits for them to end.
    fn stop_services(&mut self) {
        for app in self.apps.iter_mut().filter(|app| app.is_service()) {
            let Some(run) = app.run.as_mut().filter(|run| run.ended.is_none()) else { continue };
            if let Err(error) = run.process.kill() {
                println!("init: cannot kill service {}: {error}", app.name);
                continue;
            }
            match run.process.wait_terminated(clock::deadline_after(KILL_TIMEOUT)) {
                Ok(info) => {
                    run.ended = Some(info);
                    println!("init: stopped service {}", app.name);
                }
                Err(error) => println!("init: service {} did not end: {error}", app.name),
            }
        }
    }

    /// After a failure: kills everything still running.
    fn kill_all(&mut self) {
        for run in self.apps.iter().filter_map(|app| app.run.as_ref()) {
            if run.ended.is_none() {
                let _ = run.process.kill();
            }
        }
    }
}
