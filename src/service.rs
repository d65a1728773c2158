//! Running the forwarder as a service: settings (flags and `--config`), binding,
//! dropping root (`--user`), signals, and the exit code.
use std::process::ExitCode;

use nix::unistd::{getuid, setgid, setgroups, setuid, Uid, User};

use crate::cli::ServeArgs;
use crate::config_file;
use crate::server::{Group, Server};

/// Loads the settings, binds, switches user if asked, and serves until SIGINT/SIGTERM.
/// Exit status 2 for bad settings (one line on stderr), 1 when serving fails.
pub fn serve(args: ServeArgs) -> ExitCode {
    let cfg = match config_file::load(&args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("dnsfwd: {e}");
            return ExitCode::from(2);
        }
    };
    let user = cfg.user.clone();
    if cfg.threads > 1 {
        return serve_group(cfg, args);
    }
    let served = Server::bind(cfg)
        .and_then(|s| drop_privileges(user.as_deref()).map(|()| s))
        .and_then(|mut s| s.handle_signals().map(|()| s))
        .and_then(|mut s| {
            // SIGHUP reads everything again the way start-up did, flags included.
            s.set_reload(Box::new(move || config_file::load(&args)));
            s.exit_after_run();
            s.run()
        });
    match served {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dnsfwd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--threads N` above 1: the same steps for a group of N loops (server/group.rs).
fn serve_group(cfg: crate::config::Config, args: ServeArgs) -> ExitCode {
    let user = cfg.user.clone();
    let served = Group::bind(cfg)
        .and_then(|g| drop_privileges(user.as_deref()).map(|()| g))
        .and_then(|mut g| g.handle_signals().map(|()| g))
        .and_then(|mut g| {
            g.set_reload(Box::new(move || config_file::load(&args)));
            g.exit_after_run();
            g.run()
        });
    match served {
        Ok(per_loop) => {
            let mut total = crate::stats::Stats::default();
            for s in &per_loop {
                total += *s;
            }
            log::info!("stopped ({} loops): {total}", per_loop.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dnsfwd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Switches to user `name` (its uid, its primary group, no supplementary groups) when
/// running as root; the sockets stay bound. Running as `name` already is fine; any other
/// user cannot switch, and a missing user is an error rather than staying root.
pub fn drop_privileges(name: Option<&str>) -> std::io::Result<()> {
    let Some(name) = name else {
        return Ok(());
    };
    let err = |why: String| std::io::Error::other(format!("--user {name}: {why}"));
    let user = User::from_name(name)
        .map_err(|e| err(format!("cannot look the user up: {e}")))?
        .ok_or_else(|| err("no such user; refusing to go on with the privileges we have".into()))?;
    let me = getuid();
    if !me.is_root() {
        return match me == user.uid {
            true => Ok(()),
            false => Err(err(format!(
                "only root can switch users (running as uid {me})"
            ))),
        };
    }
    let fail = |what: &str, e: nix::Error| err(format!("{what} failed: {e}"));
    setgroups(&[user.gid]).map_err(|e| fail("setgroups", e))?;
    setgid(user.gid).map_err(|e| fail("setgid", e))?;
    setuid(user.uid).map_err(|e| fail("setuid", e))?;
    if !user.uid.is_root() && setuid(Uid::from_raw(0)).is_ok() {
        return Err(err("root could be regained after setuid".into()));
    }
    log::info!(
        "running as user {name} (uid {}, gid {})",
        user.uid,
        user.gid
    );
    Ok(())
}
