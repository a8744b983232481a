//! Release benchmark: builds and signs a release of N files of 4 KiB with `herald-sign` and,
//! on the same files in the same run, with python-tuf's Metadata API
//! (`bench_python_tuf.py`), and prints a table (wall time, peak RSS, targets metadata size).
//!
//! ```text
//! cargo build --release -p herald-signing --bin herald-sign --example bench-release
//! target/release/examples/bench-release 10000 100000
//! ```
//!
//! Needs `/usr/bin/time` (GNU time, for peak RSS) and the test virtual environment
//! (`scripts/install-test-deps`; or set HERALD_TEST_PYTHON). Not run by CI.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const FILE_SIZE: usize = 4096;
const NOW: &str = "1900000000";

struct Measure {
    wall_s: f64,
    peak_rss_kib: u64,
}

/// Runs a command under GNU time; returns wall time and peak resident set size.
fn measured(cmd: &mut Command) -> Result<Measure> {
    let report = std::env::temp_dir().join(format!("bench-time-{}", std::process::id()));
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%e %M")
        .arg("-o")
        .arg(&report)
        .arg(program)
        .args(args)
        .env("HERALD_SIGN_NOW", NOW)
        .stdout(std::process::Stdio::null());
    let status = timed.status()?;
    if !status.success() {
        return Err(format!("{cmd:?} failed: {status}").into());
    }
    let text = fs::read_to_string(&report)?;
    let _ = fs::remove_file(&report);
    let mut parts = text.split_whitespace();
    let wall_s = parts.next().ok_or("no wall time")?.parse()?;
    let peak_rss_kib = parts.next().ok_or("no RSS")?.parse()?;
    Ok(Measure {
        wall_s,
        peak_rss_kib,
    })
}

/// Writes `count` files of 4 KiB (distinct pseudo-random content) in folders of 1,000.
fn make_release(dir: &Path, count: usize) -> Result<()> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; FILE_SIZE];
    for i in 0..count {
        for chunk in buf.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let sub = dir.join(format!("d{:03}", i / 1000));
        if i % 1000 == 0 {
            fs::create_dir_all(&sub)?;
        }
        fs::write(sub.join(format!("file-{i:06}.bin")), &buf)?;
    }
    Ok(())
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn herald_sign() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target folder")?
        .join("herald-sign");
    if !path.exists() {
        return Err(format!(
            "{} missing: cargo build --release -p herald-signing --bin herald-sign",
            path.display()
        )
        .into());
    }
    Ok(path)
}

/// `herald-sign init` (not measured) then `herald-sign release` (measured); returns the
/// measure and the size of the targets metadata.
fn run_herald(
    sign: &Path,
    key: &dyn Fn(&str) -> String,
    repo: &Path,
    release: &Path,
    link: bool,
) -> Result<(Measure, u64)> {
    let status = Command::new(sign)
        .args(["init", "--repo"])
        .arg(repo)
        .args(["--root-pub", &key("root.pub.pem")])
        .args(["--targets-pub", &key("targets.pub.pem")])
        .args(["--snapshot-pub", &key("snapshot.pub.pem")])
        .args(["--timestamp-pub", &key("timestamp.pub.pem")])
        .args(["--release-pub", &key("release.pub.pem")])
        .args(["--key", &key("root.key.pem")])
        .env("HERALD_SIGN_NOW", NOW)
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        return Err("herald-sign init failed".into());
    }
    let mut cmd = Command::new(sign);
    cmd.args(["release", "--repo"])
        .arg(repo)
        .arg("--from")
        .arg(release)
        .args(["--key", &key("targets.key.pem")])
        .args(["--key", &key("snapshot.key.pem")])
        .args(["--key", &key("timestamp.key.pem")])
        .args(["--key", &key("release.key.pem")]);
    if link {
        cmd.arg("--link");
    }
    let measure = measured(&mut cmd)?;
    let size = fs::metadata(repo.join("metadata/1.targets.json"))?.len();
    Ok((measure, size))
}

fn main() -> Result<()> {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<std::result::Result<_, _>>()?;
    let counts = if counts.is_empty() {
        vec![10_000, 100_000]
    } else {
        counts
    };
    let python = std::env::var_os("HERALD_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/python"));
    let keys = workspace().join("keys-example/signing");
    let key = |name: &str| keys.join(name).display().to_string();
    let sign = herald_sign()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bench_python_tuf.py");
    let work = std::env::temp_dir().join(format!("herald-bench-{}", std::process::id()));

    println!("| files | tool | wall time (s) | peak RSS (MiB) | targets metadata (bytes) |");
    println!("|---:|---|---:|---:|---:|");
    let mut ratios = Vec::new();
    let _ = fs::remove_dir_all(&work);
    for &count in &counts {
        // Nothing is deleted until the end: on ext4, creating files just after deleting many
        // makes the inode allocator skip the recently freed ones, which would penalise
        // whichever tool runs first.
        let work = work.join(format!("n{count}"));
        let release = work.join("release");
        make_release(&release, count)?;
        // Flush the generated files now, so that neither tool pays for writing them.
        Command::new("sync").status()?;

        let pyrepo = work.join("python-tuf");
        let python_tuf = measured(
            Command::new(&python)
                .arg(&script)
                .arg(&release)
                .arg(&pyrepo)
                .arg(NOW),
        )?;
        let python_size = fs::metadata(pyrepo.join("metadata/1.targets.json"))?.len();
        // python-tuf runs first, so any advantage of running first on a file system goes to it.
        let herald_copy = run_herald(&sign, &key, &work.join("herald-copy"), &release, false)?;
        let herald_link = run_herald(&sign, &key, &work.join("herald-link"), &release, true)?;

        for (tool, (m, size)) in [
            ("python-tuf Metadata API", (&python_tuf, python_size)),
            ("herald-sign release", (&herald_copy.0, herald_copy.1)),
            (
                "herald-sign release --link",
                (&herald_link.0, herald_link.1),
            ),
        ] {
            println!(
                "| {count} | {tool} | {:.2} | {:.1} | {size} |",
                m.wall_s,
                m.peak_rss_kib as f64 / 1024.0
            );
        }
        let herald = &herald_copy.0;
        ratios.push((
            count,
            python_tuf.wall_s / herald.wall_s.max(0.01),
            python_tuf.peak_rss_kib as f64 / herald.peak_rss_kib.max(1) as f64,
        ));
    }
    println!();
    for (count, speed, memory) in ratios {
        println!(
            "{count} files, herald-sign release (copy) vs python-tuf: {speed:.1}x the speed, \
             {memory:.1}x less peak memory"
        );
    }
    let _ = fs::remove_dir_all(&work);
    Ok(())
}
