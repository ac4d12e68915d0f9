//! `nebulet run --isolate`: the program runs in a hardware protection domain (see
//! `docs/domains.md`); this process only starts the domain, hands it its stdio and directories,
//! and waits.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nebulet_domains::{Domain, DomainOptions};
use nebulet_hosted::{is_compiled, module_binary};

use crate::arguments::DirectoryArgument;

/// What `nebulet run` was asked, less what concerns only a local run.
pub(crate) struct Run {
    pub(crate) file: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) environment: Vec<String>,
    pub(crate) directories: Vec<DirectoryArgument>,
    pub(crate) listen: Vec<std::net::SocketAddr>,
    pub(crate) verbose: bool,
}

pub(crate) fn run(run: Run, bytes: Vec<u8>) -> crate::Outcome {
    let Run { file, args, environment, directories, listen, verbose } = run;
    if is_compiled(&bytes) {
        return Err(format!(
            "{} is precompiled: an isolated program is compiled inside its domain, from a \
             .wasm or .wat file",
            file.display()
        ));
    }
    let binary = module_binary(&bytes, Some(&file))?.into_owned();
    let preopens = directories
        .iter()
        .map(|DirectoryArgument { host, guest }| {
            let directory = std::fs::File::open(host)
                .and_then(|file| {
                    if file.metadata()?.is_dir() {
                        Ok(OwnedFd::from(file))
                    } else {
                        Err(std::io::Error::from(std::io::ErrorKind::NotADirectory))
                    }
                })
                .map_err(|error| format!("cannot open directory {}: {error}", host.display()))?;
            Ok((guest.clone(), directory))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut listeners = Vec::with_capacity(listen.len());
    for (index, address) in listen.into_iter().enumerate() {
        let listener = std::net::TcpListener::bind(address)
            .map_err(|error| format!("cannot listen on {address}: {error}"))?;
        if verbose {
            let bound = listener.local_addr().map_err(|error| error.to_string())?;
            eprintln!("nebulet: listening on {bound} (descriptor {})", 3 + index);
        }
        listeners.push(listener);
    }
    let name =
        file.file_stem().map_or_else(|| "main".into(), |stem| stem.to_string_lossy().into_owned());
    let executable = std::env::current_exe()
        .map_err(|error| format!("cannot find the nebulet executable: {error}"))?;
    let options = DomainOptions {
        name: name.clone(),
        args,
        environment,
        preopens,
        listeners,
        probe: std::env::var(nebulet_domains::PROBE_VARIABLE).ok(),
        // This process starts one domain: there is no later one to give its code to.
        share_code: false,
        ..DomainOptions::new(executable, name.clone())
    };
    if verbose {
        eprintln!(
            "nebulet: running {name} in a domain (NEBULET_DOMAIN_PROBE=report shows its sandbox)"
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    let status = runtime.block_on(async {
        let domain = Domain::start(binary, options)
            .await
            .map_err(|error| format!("cannot start the domain: {error}"))?;
        Ok::<_, String>(domain.wait().await)
    })?;
    crate::exit_code(&name, &status, crate::Report::chosen(verbose))
}
