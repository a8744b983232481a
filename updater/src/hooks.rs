//! Install hooks: commands run before and after an install, and the health check.
//!
//! Each command is a program and its arguments (no shell), from the configuration's `[hooks]`
//! table or, when the configuration allows it, from the release's signed metadata. It runs
//! with a clean environment (only [`HOOK_PATH`] and the `HERALD_*` variables of [`HookEnv`]),
//! the install root as working folder, no standard input, in a process group of its own, and
//! a time limit: past it the whole group is killed. Its standard output and error are captured
//! together, at most [`MAX_OUTPUT`] bytes (the rest is counted, not kept), for the status
//! report.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_manifest::rollout::Hooks;

/// Most bytes of a command's output kept for the report.
pub const MAX_OUTPUT: usize = 4096;

/// The time limit of a command whose hooks set none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The only `PATH` a hook sees.
pub const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long output still in the pipes is waited for after the command exits (a background
/// process it started may keep them open).
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// After downloads verified, before the install.
    PreInstall,
    /// After the install (and after a rollback, for the restored release).
    PostInstall,
    /// After `post_install`: is the new release working?
    HealthCheck,
}

impl HookKind {
    /// The name in the configuration and in `HERALD_HOOK`.
    pub fn name(self) -> &'static str {
        match self {
            HookKind::PreInstall => "pre_install",
            HookKind::PostInstall => "post_install",
            HookKind::HealthCheck => "health_check",
        }
    }
}

/// Where a hook comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOrigin {
    /// The endpoint's configuration.
    Configuration,
    /// The release's signed metadata.
    Release,
}

impl HookOrigin {
    fn name(self) -> &'static str {
        match self {
            HookOrigin::Configuration => "configured",
            HookOrigin::Release => "release",
        }
    }
}

/// One command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCommand {
    /// When it runs.
    pub kind: HookKind,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Time limit.
    pub timeout: Duration,
    /// Where it comes from.
    pub origin: HookOrigin,
}

/// The hooks of one install, configured ones first, in the order they run for each kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookSet(Vec<HookCommand>);

impl HookSet {
    /// Adds the commands of `hooks` from `origin`.
    pub fn add(&mut self, hooks: &Hooks, origin: HookOrigin) {
        let timeout = hooks
            .timeout_secs
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        for (kind, argv) in [
            (HookKind::PreInstall, &hooks.pre_install),
            (HookKind::PostInstall, &hooks.post_install),
            (HookKind::HealthCheck, &hooks.health_check),
        ] {
            if !argv.is_empty() {
                self.0.push(HookCommand {
                    kind,
                    argv: argv.clone(),
                    timeout,
                    origin,
                });
            }
        }
    }

    /// The commands of one kind, in order.
    pub fn of(&self, kind: HookKind) -> impl Iterator<Item = &HookCommand> {
        self.0.iter().filter(move |c| c.kind == kind)
    }

    /// Only the commands of the configuration.
    pub fn configured(&self) -> HookSet {
        HookSet(
            self.0
                .iter()
                .filter(|c| c.origin == HookOrigin::Configuration)
                .cloned()
                .collect(),
        )
    }

    /// True when there is no command.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a hook is told, as environment variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookEnv {
    /// `HERALD_RELEASE`: the release installed (or being installed).
    pub release: u64,
    /// `HERALD_PREVIOUS_RELEASE`: the release installed before, if any.
    pub previous: Option<u64>,
    /// `HERALD_CHANNEL`: the channel followed, if the repository has a rollout policy.
    pub channel: Option<String>,
    /// `HERALD_INSTALL_ROOT`, also the working folder.
    pub install_root: PathBuf,
    /// `HERALD_ROLLED_BACK_FROM`: set on the `post_install` run after a rollback.
    pub rolled_back_from: Option<u64>,
}

/// How a hook failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    /// It exited with this non-zero status.
    Exited(i32),
    /// A signal ended it.
    Signaled,
    /// It ran out of time and was killed.
    TimedOut(Duration),
    /// It could not be started.
    NotStarted(String),
}

/// A hook that failed, with its captured output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {} `{}` {}{}", .kind.name(), .origin.name(), .program, outcome_text(.outcome), output_text(.output))]
pub struct HookFailure {
    /// When it ran.
    pub kind: HookKind,
    /// Where it came from.
    pub origin: HookOrigin,
    /// The program.
    pub program: String,
    /// How it failed.
    pub outcome: HookOutcome,
    /// Its output (bounded).
    pub output: String,
}

fn outcome_text(outcome: &HookOutcome) -> String {
    match outcome {
        HookOutcome::Exited(code) => format!("exited with status {code}"),
        HookOutcome::Signaled => "was ended by a signal".into(),
        HookOutcome::TimedOut(limit) => {
            format!("ran out of time ({} s) and was killed", limit.as_secs())
        }
        HookOutcome::NotStarted(why) => format!("could not start: {why}"),
    }
}

fn output_text(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!(": {output}")
    }
}

/// Runs every hook of `kind` in `set`, in order, stopping at the first failure. Blocking:
/// call it from a blocking task.
pub fn run_kind(set: &HookSet, kind: HookKind, env: &HookEnv) -> Result<(), HookFailure> {
    for command in set.of(kind) {
        let output = run(command, env)?;
        tracing::info!(hook = kind.name(), program = %command.argv[0], %output, "hook succeeded");
    }
    Ok(())
}

/// Runs one hook; returns its output when it exits with status 0.
pub fn run(command: &HookCommand, env: &HookEnv) -> Result<String, HookFailure> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let program = command.argv.first().cloned().unwrap_or_default();
    let fail = |outcome: HookOutcome, output: String| HookFailure {
        kind: command.kind,
        origin: command.origin,
        program: program.clone(),
        outcome,
        output,
    };
    let mut process = Command::new(&program);
    process
        .args(command.argv.iter().skip(1))
        .env_clear()
        .env("PATH", HOOK_PATH)
        .env("HERALD_HOOK", command.kind.name())
        .env("HERALD_RELEASE", env.release.to_string())
        .env("HERALD_INSTALL_ROOT", &env.install_root)
        .current_dir(&env.install_root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(previous) = env.previous {
        process.env("HERALD_PREVIOUS_RELEASE", previous.to_string());
    }
    if let Some(channel) = &env.channel {
        process.env("HERALD_CHANNEL", channel);
    }
    if let Some(from) = env.rolled_back_from {
        process.env("HERALD_ROLLED_BACK_FROM", from.to_string());
    }
    let mut child = process
        .spawn()
        .map_err(|e| fail(HookOutcome::NotStarted(e.to_string()), String::new()))?;
    let captured = Captured::default();
    let readers = [
        child.stdout.take().map(|out| captured.reader(out)),
        child.stderr.take().map(|err| captured.reader(err)),
    ];
    let deadline = Instant::now() + command.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let group = rustix::process::Pid::from_child(&child);
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
                let _ = child.kill();
                let _ = child.wait();
                break Err(HookOutcome::TimedOut(command.timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(HookOutcome::NotStarted(e.to_string()));
            }
        }
    };
    let drained = Instant::now() + DRAIN_GRACE;
    for reader in readers.into_iter().flatten() {
        while !reader.is_finished() && Instant::now() < drained {
            std::thread::sleep(Duration::from_millis(5));
        }
        // A reader still blocked (a background process holds the pipe) ends with it.
    }
    let output = captured.text();
    match status {
        Ok(status) if status.success() => Ok(output),
        Ok(status) => match status.code() {
            Some(code) => Err(fail(HookOutcome::Exited(code), output)),
            None if status.signal().is_some() => Err(fail(HookOutcome::Signaled, output)),
            None => Err(fail(HookOutcome::Signaled, output)),
        },
        Err(outcome) => Err(fail(outcome, output)),
    }
}

/// Output of both pipes, in arrival order, the first [`MAX_OUTPUT`] bytes kept.
#[derive(Debug, Clone, Default)]
struct Captured(Arc<Mutex<(Vec<u8>, u64)>>);

impl Captured {
    fn reader(&self, mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<()> {
        let captured = self.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let Ok(mut guard) = captured.0.lock() else {
                            return;
                        };
                        let (kept, dropped) = &mut *guard;
                        let room = MAX_OUTPUT.saturating_sub(kept.len()).min(n);
                        kept.extend_from_slice(&buf[..room]);
                        *dropped += (n - room) as u64;
                    }
                }
            }
        })
    }

    fn text(&self) -> String {
        let Ok(guard) = self.0.lock() else {
            return String::new();
        };
        let (kept, dropped) = &*guard;
        let mut text = String::from_utf8_lossy(kept).trim().to_owned();
        if *dropped > 0 {
            text.push_str(&format!(" [... {dropped} more bytes]"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sh(script: &str, timeout: Duration) -> HookCommand {
        HookCommand {
            kind: HookKind::HealthCheck,
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            timeout,
            origin: HookOrigin::Configuration,
        }
    }

    fn env(dir: &std::path::Path) -> HookEnv {
        HookEnv {
            release: 8,
            previous: Some(7),
            channel: Some("stable".into()),
            install_root: dir.to_path_buf(),
            rolled_back_from: None,
        }
    }

    #[test]
    fn hooks_run_with_a_clean_environment_in_the_install_root() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("HERALD_TEST_SECRET", "must not leak");
        let output = run(
            &sh("env | sort; pwd", Duration::from_secs(10)),
            &env(dir.path()),
        )
        .unwrap();
        let mut vars: Vec<&str> = output
            .lines()
            .filter(|l| l.contains('='))
            .map(|l| l.split('=').next().unwrap())
            .filter(|name| !["PWD", "SHLVL", "_", "OLDPWD"].contains(name))
            .collect();
        vars.sort_unstable();
        assert_eq!(
            vars,
            [
                "HERALD_CHANNEL",
                "HERALD_HOOK",
                "HERALD_INSTALL_ROOT",
                "HERALD_PREVIOUS_RELEASE",
                "HERALD_RELEASE",
                "PATH"
            ],
            "{output}"
        );
        assert!(output.contains("HERALD_RELEASE=8"), "{output}");
        assert!(!output.contains("must not leak"));
        let cwd = output.lines().last().unwrap();
        assert_eq!(
            std::fs::canonicalize(cwd).unwrap(),
            std::fs::canonicalize(dir.path()).unwrap()
        );
    }

    #[test]
    fn a_failing_hook_reports_its_status_and_output() {
        let dir = tempfile::tempdir().unwrap();
        let err = run(
            &sh("echo service down >&2; exit 3", Duration::from_secs(10)),
            &env(dir.path()),
        )
        .unwrap_err();
        assert_eq!(err.outcome, HookOutcome::Exited(3));
        assert_eq!(err.output, "service down");
        assert_eq!(
            err.to_string(),
            "health_check configured `/bin/sh` exited with status 3: service down"
        );
    }

    #[test]
    fn a_hook_past_its_time_limit_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-survived");
        let script = format!(
            "(sleep 2; touch {}) & echo started; sleep 30",
            marker.display()
        );
        let started = Instant::now();
        let err = run(&sh(&script, Duration::from_millis(300)), &env(dir.path())).unwrap_err();
        assert!(matches!(err.outcome, HookOutcome::TimedOut(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(err.output, "started");
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!marker.exists(), "the hook's process group was killed");
    }

    #[test]
    fn captured_output_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let err = run(
            &sh(
                "head -c 100000 /dev/zero | tr '\\0' x; exit 1",
                Duration::from_secs(10),
            ),
            &env(dir.path()),
        )
        .unwrap_err();
        assert!(err.output.starts_with(&"x".repeat(MAX_OUTPUT)));
        assert!(
            err.output
                .ends_with(&format!("[... {} more bytes]", 100_000 - MAX_OUTPUT)),
            "{}",
            &err.output[MAX_OUTPUT..]
        );
    }

    #[test]
    fn a_missing_program_is_a_failure_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let command = HookCommand {
            argv: vec!["/nonexistent/health".into()],
            ..sh("", Duration::from_secs(1))
        };
        let err = run(&command, &env(dir.path())).unwrap_err();
        assert!(matches!(err.outcome, HookOutcome::NotStarted(_)), "{err}");
    }

    #[test]
    fn configured_hooks_run_before_release_hooks() {
        let mut set = HookSet::default();
        set.add(
            &Hooks {
                health_check: vec!["/a".into()],
                ..Hooks::default()
            },
            HookOrigin::Configuration,
        );
        set.add(
            &Hooks {
                health_check: vec!["/b".into()],
                pre_install: vec!["/c".into()],
                timeout_secs: Some(5),
                ..Hooks::default()
            },
            HookOrigin::Release,
        );
        let checks: Vec<(&str, Duration)> = set
            .of(HookKind::HealthCheck)
            .map(|c| (c.argv[0].as_str(), c.timeout))
            .collect();
        assert_eq!(
            checks,
            [("/a", DEFAULT_TIMEOUT), ("/b", Duration::from_secs(5))]
        );
        assert_eq!(set.of(HookKind::PreInstall).count(), 1);
    }
}
