//! What `berth serve` checks before it serves: one owner per data
//! directory (and `berth migrate` respects it), private file modes (and
//! their repair on an old directory), strict configuration (unknown
//! sections and keys refused, other programs' `BERTH_*` variables left
//! alone), `berth config check`, and unreachable backends named within
//! seconds instead of a hang.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Generous: the machine is shared; the point is "not a hang".
const EXIT_BOUND: Duration = Duration::from_secs(20);

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `berth ARGS` with only `env` as `BERTH_*` environment, killed if
/// it outlives `EXIT_BOUND` (then the test fails).
fn berth(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("NO_COLOR", "1");
    for (key, _) in std::env::vars() {
        if key.starts_with("BERTH_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn berth");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > EXIT_BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "berth {args:?} still ran after {EXIT_BOUND:?}; stderr: {}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Run {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        took: started.elapsed(),
    }
}

fn serve(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let data = data.to_str().expect("utf-8 path");
    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--data", data];
    args.extend_from_slice(extra);
    berth(&args, env)
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn one_server_per_data_directory() {
    let dir = tempdir("datadir-lock");
    let data = dir.path().join("data");
    let mut first = TestServer::start(&data);

    let second = serve(&data, &[], &[]);
    assert!(!second.status.success(), "a second server started");
    let pid = format!("pid {}", first.pid());
    assert!(
        second.stderr.contains(&pid) && second.stderr.contains("stop it first"),
        "the refusal should name the holder ({pid}): {}",
        second.stderr
    );
    assert!(!second.stdout.contains("listening on"), "{}", second.stdout);

    // `berth migrate` must not copy a registry that is still running.
    let to = dir.path().join("to.toml");
    std::fs::write(
        &to,
        format!(
            "[storage]\nkind = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:{}\"\n\
             [metadata]\nurl = \"postgres://berth@127.0.0.1:{}/x\"\n",
            closed_port(),
            closed_port()
        ),
    )
    .expect("write target config");
    let migrate = berth(
        &[
            "migrate",
            "--from-data",
            data.to_str().expect("utf-8"),
            "--to",
            to.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(!migrate.status.success(), "migrate ran on a live registry");
    assert!(migrate.stderr.contains(&pid), "{}", migrate.stderr);

    // Once the first is gone, the directory is free again. (Serving first:
    // a SIGTERM before the server has reached its serve loop kills it.)
    expect_status(Api::new(&first).get("/v2/").await, 200).await;
    first.stop();
    first.restart();
    assert!(first.is_running());
}

#[cfg(unix)]
#[tokio::test]
async fn data_directory_is_private_and_repaired_at_startup() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir("datadir-modes");
    let data = dir.path().join("data");
    let mut server = TestServer::start(&data);
    // A write, so SQLite's -wal and -shm exist.
    let api = Api::new(&server);
    api.push_blob("modes/app", b"private").await;
    assert_eq!(mode(&data), 0o700, "data directory");
    for name in ["berth.db", "berth.lock"] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    for name in ["berth.db-wal", "berth.db-shm", "initial-owner-password"] {
        let path = data.join(name);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{name}");
        }
    }
    server.stop();
    assert!(
        !server.logs().contains("tightened the mode"),
        "nothing to repair on a fresh directory:\n{}",
        server.logs()
    );

    // A directory made by an older berth (or by hand) is repaired, saying so.
    let perm = std::fs::Permissions::from_mode;
    std::fs::set_permissions(&data, perm(0o755)).expect("chmod dir");
    std::fs::set_permissions(data.join("berth.db"), perm(0o644)).expect("chmod db");
    server.restart();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("berth.db")), 0o600);
    let logs = server.logs();
    let db = data.join("berth.db").display().to_string();
    assert!(
        logs.lines()
            .any(|l| l.contains("tightened the mode") && l.contains(&db) && l.contains("0644")),
        "the repair of {db} should be logged:\n{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("tightened the mode") && l.contains("0755")),
        "the repair of the directory should be logged:\n{logs}"
    );
}

#[test]
fn unknown_sections_and_keys_are_refused_by_name() {
    let dir = tempdir("config-strict");
    let data = dir.path().join("data");
    let file = dir.path().join("berth.toml");
    let file_arg = file.to_str().expect("utf-8");
    for (toml, name) in [
        ("[storge]\nkind = \"s3\"\n", "storge"),
        ("data_dri = \"/tmp/x\"\n", "data_dri"),
        ("[server]\nheader_read_timeout = 5\n", "header_read_timeout"),
    ] {
        std::fs::write(&file, toml).expect("write config");
        let run = serve(&data, &["--config", file_arg], &[]);
        assert!(!run.status.success(), "{toml:?} was accepted");
        assert!(
            run.stderr.contains(name) && run.stderr.contains(file_arg),
            "the error should name {name} and {file_arg}: {}",
            run.stderr
        );
        let check = berth(&["config", "check", "--config", file_arg], &[]);
        assert!(!check.status.success(), "config check accepted {toml:?}");
        assert!(check.stderr.contains(name), "{}", check.stderr);
    }
    // A misspelt section in the environment too.
    let run = serve(&data, &[], &[("BERTH_STORGE__KIND", "s3")]);
    assert!(!run.status.success());
    assert!(
        run.stderr.to_lowercase().contains("storge"),
        "{}",
        run.stderr
    );
}

#[test]
fn portal_lifetimes_that_cannot_work_are_refused() {
    let dir = tempdir("config-portal");
    let file = dir.path().join("berth.toml");
    let file_arg = file.to_str().expect("utf-8");
    for toml in [
        "[portal]\nidle_timeout_seconds = 0\n",
        "[portal]\nidle_timeout_seconds = 7200\nsession_lifetime_seconds = 3600\n",
        "[portal]\nsession_lifetime_seconds = 99999999999\n",
    ] {
        std::fs::write(&file, toml).expect("write config");
        let check = berth(&["config", "check", "--config", file_arg], &[]);
        assert!(!check.status.success(), "config check accepted {toml:?}");
        assert!(
            check.stderr.contains("portal.idle_timeout_seconds"),
            "{}",
            check.stderr
        );
    }
    std::fs::write(&file, "[portal]\nidle_timeout_seconds = 600\n").expect("write config");
    let check = berth(&["config", "check", "--config", file_arg], &[]);
    assert!(check.status.success(), "{}", check.stderr);
}

#[tokio::test]
async fn client_variables_do_not_disturb_the_server() {
    let dir = tempdir("config-env");
    let server = TestServer::start_with_env(
        &dir.path().join("data"),
        &[
            ("BERTH_REGISTRY", "http://127.0.0.1:1"),
            ("BERTH_USERNAME", "someone"),
            ("BERTH_PASSWORD", "secret"),
            ("BERTH_BIN", "/nonexistent"),
        ],
    );
    let resp = http_client()
        .get(format!("{}/v2/", server.url()))
        .basic_auth("owner", Some(server.owner_password()))
        .send()
        .await
        .expect("GET /v2/");
    assert_eq!(resp.status(), 200);
}

#[test]
fn config_check_prints_the_effective_configuration_with_secrets_masked() {
    let dir = tempdir("config-check");
    let file = dir.path().join("berth.toml");
    std::fs::write(
        &file,
        "[storage]\nkind = \"s3\"\nbucket = \"images\"\nendpoint = \"http://127.0.0.1:3900\"\n\
         access_key_id = \"GKvisible\"\nsecret_access_key = \"s3-very-secret\"\n\
         [metadata]\nurl = \"postgres://berth:db-very-secret@127.0.0.1:5432/berth\"\n\
         [auth]\ninitial_owner_password = \"owner-very-secret\"\n",
    )
    .expect("write config");
    let run = berth(
        &["config", "check", "--config", file.to_str().expect("utf-8")],
        &[("BERTH_SERVER__MAX_CONNECTIONS", "777")],
    );
    assert!(run.status.success(), "{}", run.stderr);
    for secret in ["s3-very-secret", "db-very-secret", "owner-very-secret"] {
        assert!(
            !run.stdout.contains(secret),
            "{secret} shown:\n{}",
            run.stdout
        );
    }
    for shown in [
        "bucket = \"images\"",
        "access_key_id = \"GKvisible\"",
        "secret_access_key = \"***\"",
        "initial_owner_password = \"***\"",
        "postgres://berth:***@127.0.0.1:5432/berth",
        // The environment is part of the effective configuration.
        "max_connections = 777",
        "max_connections_per_ip = 512",
        "[server]",
    ] {
        assert!(
            run.stdout.contains(shown),
            "{shown} missing:\n{}",
            run.stdout
        );
    }
}

#[test]
fn an_unreachable_object_store_fails_the_start_naming_it() {
    let dir = tempdir("s3-unreachable");
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let run = serve(
        &dir.path().join("data"),
        &[],
        &[
            ("BERTH_STORAGE__KIND", "s3"),
            ("BERTH_STORAGE__BUCKET", "nowhere"),
            ("BERTH_STORAGE__ENDPOINT", &endpoint),
            ("BERTH_STORAGE__ACCESS_KEY_ID", "GK0"),
            ("BERTH_STORAGE__SECRET_ACCESS_KEY", "x"),
        ],
    );
    assert!(!run.status.success(), "started without its object store");
    assert!(
        run.stderr.contains(&endpoint) && run.stderr.contains("nowhere"),
        "the error should name {endpoint} and the bucket: {}",
        run.stderr
    );
    assert!(run.took < EXIT_BOUND);
}

#[test]
fn an_unreachable_database_fails_the_start_naming_it() {
    let dir = tempdir("pg-unreachable");
    let address = format!("127.0.0.1:{}", closed_port());
    let url = format!("postgres://berth:pw@{address}/x");
    let run = serve(
        &dir.path().join("data"),
        &[],
        &[("BERTH_METADATA__URL", &url)],
    );
    assert!(!run.status.success(), "started without its database");
    assert!(
        run.stderr.contains(&address) && !run.stderr.contains(":pw@"),
        "the error should name {address}, password redacted: {}",
        run.stderr
    );
}

#[test]
fn config_print_is_the_effective_configuration_ready_to_save() {
    let dir = tempdir("config-print");
    let file = dir.path().join("berth.toml");
    std::fs::write(
        &file,
        "data_dir = \"relative-data\"\n[auth]\ninitial_owner_password = \"owner-very-secret\"\n",
    )
    .expect("write config");
    let run = berth(
        &["config", "print", "--config", file.to_str().expect("utf-8")],
        &[("BERTH_GC__INTERVAL_SECONDS", "5")],
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert!(!run.stdout.contains("owner-very-secret"), "{}", run.stdout);
    assert!(
        run.stdout.contains("interval_seconds = 5"),
        "{}",
        run.stdout
    );
    // Relative paths are shown as the server would use them: absolute.
    let data_line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("data_dir = "))
        .expect("data_dir");
    assert!(
        data_line.contains("\"/") && data_line.ends_with("relative-data\""),
        "{data_line}"
    );
    // What it prints loads again, to the same configuration.
    let saved = dir.path().join("saved.toml");
    std::fs::write(&saved, &run.stdout).expect("write");
    let again = berth(
        &[
            "config",
            "print",
            "--config",
            saved.to_str().expect("utf-8"),
        ],
        &[("BERTH_GC__INTERVAL_SECONDS", "5")],
    );
    assert!(again.status.success(), "{}", again.stderr);
    assert_eq!(again.stdout, run.stdout);
}

/// `berth serve` (no --data) in `cwd` until it answers HTTP: its stdout
/// so far.
fn serve_in(cwd: &Path, extra: &[&str]) -> String {
    use std::io::{BufRead, Write};
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env("NO_COLOR", "1");
    for (key, _) in std::env::vars() {
        if key.starts_with("BERTH_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd.spawn().expect("spawn berth");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = String::new();
    let mut address = None;
    while address.is_none() {
        let line = lines
            .recv_timeout(EXIT_BOUND)
            .expect("berth prints where it listens");
        address = line
            .split_once(" listening on http://")
            .map(|(_, a)| a.to_string());
        seen.push_str(&line);
        seen.push('\n');
    }
    // Serving means everything said at startup has been said.
    let address = address.expect("address");
    let started = Instant::now();
    loop {
        let answered = std::net::TcpStream::connect(&address)
            .and_then(|mut s| {
                s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
                let mut reply = String::new();
                s.read_to_string(&mut reply)?;
                Ok(reply.starts_with("HTTP/1.1"))
            })
            .unwrap_or(false);
        if answered {
            break;
        }
        assert!(started.elapsed() < EXIT_BOUND, "berth never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    for line in lines.try_iter() {
        seen.push_str(&line);
        seen.push('\n');
    }
    seen
}

#[test]
fn a_new_registry_is_announced_with_its_absolute_path() {
    let dir = tempdir("announce");
    let cwd = dir.path().canonicalize().expect("canonical");
    // The default, relative to the working directory: said loudly.
    let first = serve_in(&cwd, &[]);
    // Scripts read the first line for the address: it stays first.
    assert!(
        first
            .lines()
            .next()
            .is_some_and(|l| l.contains(" listening on ")),
        "{first}"
    );
    let default_dir = cwd.join("berth-data");
    assert!(
        first.contains("no data directory was given")
            && first.contains(&default_dir.display().to_string()),
        "{first}"
    );
    assert!(default_dir.join("berth.db").exists());
    // The same directory again: an existing registry, nothing to say.
    let second = serve_in(&cwd, &[]);
    assert!(!second.contains("new"), "{second}");
    // Given explicitly (relative): the absolute path, without the warning.
    let third = serve_in(&cwd, &["--data", "chosen"]);
    assert!(
        third.contains(&format!(
            "creating a new registry in {}",
            cwd.join("chosen").display()
        )) && !third.contains("no data directory"),
        "{third}"
    );
}
