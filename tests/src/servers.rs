//! Servers started by the benchmark programs (nginx, `openssl ocsp`, cfssl, `herald-ca
//! serve`), each in a process group of its own and stopped with its whole group.
//!
//! Servers that fork (nginx's workers, `openssl ocsp -multi`) leave their children running
//! when only the parent is killed: the children are re-parented to init and keep their
//! ports and files. So every server starts as the leader of a new process group
//! ([`ServerProcess::spawn`]); stopping it signals the whole group, waits for the leader,
//! then for every member to exit, and kills what is still there after a grace period. A
//! [`ServerProcess`] dropped on an error or panic path does the same. At its end a program
//! calls [`check_none_left`], which looks through `/proc` for any process still in a group
//! it started or whose command line names the program's work folder, and reports them.
//!
//! A server outside the terminal's foreground process group does not get the terminal's
//! Ctrl-C, so [`stop_all_on_signal`] stops every started group when the program itself is
//! interrupted or terminated.

use std::io;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use rustix::process::{kill_process_group, Pid, Signal};

/// How long the members of a group get to exit after `SIGTERM` before `SIGKILL`.
const GRACE: Duration = Duration::from_secs(10);

/// The groups started by this program: group ID (the leader's process ID) and a name.
static STARTED: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());

/// A server process leading a process group of its own; the whole group is stopped when it
/// is dropped (or by [`ServerProcess::stop`]).
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    name: String,
    stopped: bool,
}

impl ServerProcess {
    /// Starts `cmd` as the leader of a new process group (its group ID is its process ID)
    /// and records the group for [`check_none_left`] and [`stop_all_on_signal`].
    pub fn spawn(name: &str, cmd: &mut Command) -> io::Result<ServerProcess> {
        use std::os::unix::process::CommandExt;
        let child = cmd.process_group(0).spawn()?;
        lock_started().push((child.id(), name.to_owned()));
        Ok(ServerProcess {
            child,
            name: name.to_owned(),
            stopped: false,
        })
    }

    /// The leader's process ID, which is also the group ID.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The leader's exit status if it has already exited (a server that failed to start).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Stops the whole group: `SIGTERM` to every member, the leader waited for, then every
    /// member given [`GRACE`] to exit before `SIGKILL`. Fails naming the processes still
    /// running after that.
    pub fn stop(&mut self) -> io::Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let pgid = self.child.id();
        signal_group(pgid, Signal::TERM);
        let deadline = Instant::now() + GRACE;
        while self.child.try_wait()?.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !wait_group_empty(pgid, deadline) {
            signal_group(pgid, Signal::KILL);
        }
        // The leader is reaped in any case (after SIGKILL if it ignored SIGTERM).
        self.child.wait()?;
        if wait_group_empty(pgid, Instant::now() + Duration::from_secs(2)) {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "{} (process group {pgid}) still has running processes: {:?}",
            self.name,
            group_members(pgid)
        )))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            eprintln!("stopping a server: {err}");
        }
    }
}

fn lock_started() -> std::sync::MutexGuard<'static, Vec<(u32, String)>> {
    // The list stays usable even if a thread panicked while holding it.
    STARTED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn signal_group(pgid: u32, signal: Signal) {
    let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) else {
        return;
    };
    // ESRCH (the group is already gone) is what a stopped group answers.
    let _ = kill_process_group(pid, signal);
}

/// Waits until group `pgid` has no running member; false if one is left at `deadline`.
fn wait_group_empty(pgid: u32, deadline: Instant) -> bool {
    loop {
        if group_members(pgid).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One process as `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Process ID.
    pub pid: u32,
    /// Process group ID.
    pub pgid: u32,
    /// Command line, arguments separated by spaces.
    pub command: String,
}

/// Every running process (zombies, which hold no port, file or memory, aside).
fn processes() -> Vec<ProcessInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = std::process::id();
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            if pid == own {
                return None;
            }
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "PID (COMM) STATE PPID PGRP ...": COMM may hold spaces and parentheses.
            let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
            let state = fields.next()?;
            let pgid: u32 = fields.nth(1)?.parse().ok()?;
            if state == "Z" || state == "X" {
                return None;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let command = String::from_utf8_lossy(&cmdline)
                .split('\0')
                .filter(|a| !a.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            Some(ProcessInfo { pid, pgid, command })
        })
        .collect()
}

/// The running members of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|p| p.pgid == pgid)
        .map(|p| p.pid)
        .collect()
}

/// Every running process in a group this program started, or whose command line names one
/// of `work_dirs`.
pub fn leftovers(work_dirs: &[&Path]) -> Vec<ProcessInfo> {
    let groups: Vec<u32> = lock_started().iter().map(|(pgid, _)| *pgid).collect();
    let dirs: Vec<String> = work_dirs
        .iter()
        .map(|d| d.display().to_string())
        .filter(|d| !d.is_empty())
        .collect();
    processes()
        .into_iter()
        .filter(|p| groups.contains(&p.pgid) || dirs.iter().any(|d| p.command.contains(d)))
        .collect()
}

/// Checks, at the end of a program, that no server it started is still running (nor any
/// process naming one of `work_dirs`). Fails with one line per process left.
pub fn check_none_left(work_dirs: &[&Path]) -> Result<(), String> {
    let left = leftovers(work_dirs);
    if left.is_empty() {
        return Ok(());
    }
    Err(left
        .iter()
        .map(|p| {
            format!(
                "process {} (group {}) still running: {}",
                p.pid, p.pgid, p.command
            )
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Stops every started group and exits when the program gets `SIGINT`, `SIGTERM` or
/// `SIGHUP` (exit status 128 + the signal). Call once at the start of a program that starts
/// servers; later calls do nothing.
pub fn stop_all_on_signal() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                eprintln!("cannot watch for interruptions: {err}");
                return;
            }
        };
        // The handlers are in place before this function returns, so no signal is missed.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let number = runtime.block_on(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let mut interrupt = signal(SignalKind::interrupt())?;
                let mut terminate = signal(SignalKind::terminate())?;
                let mut hangup = signal(SignalKind::hangup())?;
                let _ = ready_tx.send(());
                io::Result::Ok(tokio::select! {
                    _ = interrupt.recv() => 2,
                    _ = terminate.recv() => 15,
                    _ = hangup.recv() => 1,
                })
            });
            let Ok(number) = number else {
                return;
            };
            let groups: Vec<u32> = lock_started().iter().map(|(pgid, _)| *pgid).collect();
            for &pgid in &groups {
                signal_group(pgid, Signal::TERM);
            }
            let deadline = Instant::now() + GRACE;
            for &pgid in &groups {
                if !wait_group_empty(pgid, deadline) {
                    signal_group(pgid, Signal::KILL);
                }
            }
            eprintln!("interrupted: stopped {} server group(s)", groups.len());
            std::process::exit(128 + number);
        });
        let _ = ready_rx.recv();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server whose process forks two children that outlive it unless their group is
    /// signalled (as nginx's workers and `openssl ocsp -multi`'s children do).
    fn forking_server(marker: &str) -> ServerProcess {
        ServerProcess::spawn(
            "forking test server",
            Command::new("sh").args([
                "-c",
                "sleep 600 & sleep 600 & wait",
                "forking-test-server",
                marker,
            ]),
        )
        .expect("sh runs")
    }

    /// Running processes whose command line names `marker` (other tests' servers aside).
    fn naming(marker: &str) -> Vec<ProcessInfo> {
        processes()
            .into_iter()
            .filter(|p| p.command.contains(marker))
            .collect()
    }

    fn wait_for_members(pgid: u32, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while group_members(pgid).len() < count {
            assert!(Instant::now() < deadline, "the children never started");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn stopped_server_leaves_no_forked_child() {
        let marker = format!("stop-marker-{}", std::process::id());
        let mut server = forking_server(&marker);
        let pgid = server.id();
        wait_for_members(pgid, 3);
        server.stop().expect("the whole group stops");
        assert_eq!(group_members(pgid), Vec::<u32>::new());
        assert_eq!(naming(&marker), Vec::new());
    }

    #[test]
    fn server_dropped_on_a_panic_path_leaves_no_forked_child() {
        let marker = format!("panic-marker-{}", std::process::id());
        let pgid = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let server = forking_server(&marker);
                    let pgid = server.id();
                    wait_for_members(pgid, 3);
                    std::panic::panic_any(pgid)
                })
                .join()
                .expect_err("the thread panicked")
                .downcast::<u32>()
                .map(|pgid| *pgid)
                .expect("the panic carries the group ID")
        });
        assert_eq!(group_members(pgid), Vec::<u32>::new());
        assert_eq!(naming(&marker), Vec::new());
    }

    #[test]
    fn process_naming_the_work_folder_is_reported_as_left() {
        let marker = format!("/work-folder-marker-{}", std::process::id());
        let mut stray = Command::new("sh")
            .args(["-c", "sleep 600", "stray", &marker])
            .spawn()
            .expect("sh runs");
        let deadline = Instant::now() + Duration::from_secs(10);
        let found = loop {
            let found = check_none_left(&[Path::new(&marker)]);
            if found.is_err() || Instant::now() > deadline {
                break found;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        stray.kill().expect("the stray process is ours");
        stray.wait().expect("reaped");
        let report = found.expect_err("the stray process is reported");
        assert!(report.contains(&marker), "{report}");
        assert!(report.contains(&stray.id().to_string()), "{report}");
    }
}
