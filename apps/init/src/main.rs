//! `init`: the first process.
//!
//! Reads the system image from its bootstrap channel, then runs the manifest's directives in
//! order: `service NAME` starts the app and waits (up to 5 s) for its READY message, `start
//! NAME` starts it as a task. Each app gets the image (without the manifest) on a channel of
//! its own as its bootstrap handle. When every task has ended, init kills the services and
//! exits 0 if every task exited with code 0, else 1.

use std::time::Duration;

use nebulet_abi::WAIT_MANY_MAX_ITEMS;
use nebulet_abi::bootstrap::{Directive, READY, parse_manifest};
use sip::bootstrap::Image;
use sip::{
    Channel, DEADLINE_INFINITE, Error, InfoProcess, InfoProcessExt, Module, Process, Signals,
    WaitItem, clock,
};

/// How long a service has to report READY.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a killed service has to end.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// An app init started.
struct Child {
    name: String,
    service: bool,
    process: Process,
    /// Init's end of the child's bootstrap channel, kept open while the child runs.
    channel: Channel,
    /// How it ended, once it has.
    ended: Option<InfoProcess>,
}

/// Everything init started, so a failure can stop it all.
#[derive(Default)]
struct Init {
    children: Vec<Child>,
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
        let bootstrap = sip::process::bootstrap_channel().ok_or("no bootstrap channel")?;
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
            let (Directive::Service(name) | Directive::Start(name)) = *directive;
            if image.module(name).is_none() {
                return Err(format!("the manifest names {name}, which is not in the image"));
            }
        }

        for directive in directives {
            match directive {
                Directive::Service(name) => {
                    self.spawn(&image, name, true)?;
                    self.wait_ready()?;
                    println!("init: started service {name}");
                }
                Directive::Start(name) => {
                    self.spawn(&image, name, false)?;
                    println!("init: started {name}");
                }
            }
        }

        self.wait_for_tasks()?;
        self.stop_services();

        let tasks: Vec<&Child> = self.children.iter().filter(|child| !child.service).collect();
        let failed =
            tasks.iter().filter(|child| !child.ended.is_some_and(|info| info.succeeded())).count();
        println!("init: all {} tasks done", tasks.len());
        if failed == 0 {
            Ok(0)
        } else {
            println!("init: {failed} of {} tasks failed", tasks.len());
            Ok(1)
        }
    }

    /// Creates and starts the app `name` with a new channel carrying the image.
    fn spawn(&mut self, image: &Image, name: &str, service: bool) -> Result<(), String> {
        let context = |what: &str, error: Error| format!("cannot start {name}: {what}: {error}");
        let module: &Module = image.module(name).ok_or(format!("no app {name} in the image"))?;
        let (ours, theirs) = Channel::create().map_err(|error| context("channel_create", error))?;
        // Queue the whole image before the child runs, so a child that never reads it or exits
        // at once cannot make the sending fail.
        image.send(&ours).map_err(|error| context("sending the image", error))?;
        let process =
            Process::create(module, name).map_err(|error| context("process_create", error))?;
        process
            .start(Some(theirs.into_handle()))
            .map_err(|failed| context("process_start", failed.error))?;
        self.children.push(Child {
            name: name.to_owned(),
            service,
            process,
            channel: ours,
            ended: None,
        });
        Ok(())
    }

    /// Waits for the READY message of the service started last.
    fn wait_ready(&mut self) -> Result<(), String> {
        let child = self.children.last_mut().ok_or("no service to wait for")?;
        let deadline = clock::deadline_after(READY_TIMEOUT);
        loop {
            match child.channel.read_blocking(deadline) {
                Ok(message) if message.bytes == READY => return Ok(()),
                // Not part of the protocol: ignore it.
                Ok(_) => {}
                Err(Error::TimedOut) => {
                    return Err(format!(
                        "service {} not ready after {} s",
                        child.name,
                        READY_TIMEOUT.as_secs()
                    ));
                }
                Err(Error::PeerClosed) => {
                    let how = child
                        .process
                        .wait_terminated(clock::deadline_after(KILL_TIMEOUT))
                        .map(|info| {
                            child.ended = Some(info);
                            info.describe()
                        })
                        .unwrap_or_else(|error| format!("closed its channel ({error})"));
                    return Err(format!("service {} {how} before it was ready", child.name));
                }
                Err(error) => return Err(format!("waiting for service {}: {error}", child.name)),
            }
        }
    }

    /// Waits until every task has ended, reporting each end (and any service that ends).
    fn wait_for_tasks(&mut self) -> Result<(), String> {
        const MAX: usize = WAIT_MANY_MAX_ITEMS as usize;
        loop {
            let running = |service: bool| {
                self.children
                    .iter()
                    .enumerate()
                    .filter(move |(_, child)| child.service == service && child.ended.is_none())
                    .map(|(index, _)| index)
            };
            // Tasks first: they decide when init is done; services only get reported.
            let mut watched: Vec<usize> = running(false).take(MAX).collect();
            if watched.is_empty() {
                return Ok(());
            }
            let room = MAX - watched.len();
            watched.extend(running(true).take(room));
            let mut items: Vec<WaitItem> = watched
                .iter()
                .map(|&index| WaitItem::new(&self.children[index].process, Signals::TERMINATED))
                .collect();
            sip::wait_many(&mut items, DEADLINE_INFINITE)
                .map_err(|error| format!("waiting for the tasks: {error}"))?;
            for (item, &index) in items.iter().zip(&watched) {
                if !item.is_pending(Signals::TERMINATED) {
                    continue;
                }
                let child = &mut self.children[index];
                let info = child
                    .process
                    .info()
                    .map_err(|error| format!("cannot inspect {}: {error}", child.name))?;
                child.ended = Some(info);
                let kind = if child.service { "service " } else { "" };
                println!("init: {kind}{} {}", child.name, info.describe());
            }
        }
    }

    /// Kills the services still running and waits for them to end.
    fn stop_services(&mut self) {
        for child in self.children.iter_mut().filter(|child| child.service && child.ended.is_none())
        {
            if let Err(error) = child.process.kill() {
                println!("init: cannot kill service {}: {error}", child.name);
                continue;
            }
            match child.process.wait_terminated(clock::deadline_after(KILL_TIMEOUT)) {
                Ok(info) => {
                    child.ended = Some(info);
                    println!("init: stopped service {}", child.name);
                }
                Err(error) => println!("init: service {} did not end: {error}", child.name),
            }
        }
    }

    /// After a failure: kills everything still running.
    fn kill_all(&mut self) {
        for child in self.children.iter().filter(|child| child.ended.is_none()) {
            let _ = child.process.kill();
        }
    }
}
