//! The `berth` client commands as a person or a script runs them, against
//! a real server: client options before or after the subcommand, errors as
//! JSON with `-o json`, a closed standard output, `berth update` without
//! flags, activity tables that fit the width, `--since` forms, and a
//! server log without colour escapes when it goes to a file (docs/cli.md).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::Value;

/// `berth ARGS` with `env` and none of the test's own `BERTH_*` variables.
fn berth_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("BERTH_") || key == "COLUMNS" {
            cmd.env_remove(key);
        }
    }
    // A HOME without a Docker config: no stored credentials are used.
    cmd.env("DOCKER_CONFIG", "/nonexistent-berth-test-docker-config");
    cmd.envs(env.iter().copied());
    cmd.output().expect("run berth")
}

fn berth(args: &[&str]) -> Output {
    berth_with(args, &[])
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The owner's connection options for `server`.
fn owner(server: &TestServer) -> Vec<String> {
    vec![
        "--registry".into(),
        server.url(),
        "-u".into(),
        "owner".into(),
        "-p".into(),
        server.owner_password().into(),
    ]
}

/// `berth ARGS... <owner options>`: must succeed.
fn ok(server: &TestServer, args: &[&str]) -> Output {
    let conn = owner(server);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(conn.iter().map(String::as_str));
    let out = berth(&all);
    assert!(out.status.success(), "berth {args:?}: {}", text(&out));
    out
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn client_options_go_before_or_after_the_subcommand() {
    let dir = tempdir("cli-options");
    let server = TestServer::start(&dir.path().join("data"));
    let url = server.url();
    let pw = server.owner_password();
    ok(&server, &["sp", "create", "--name", "ci"]);
    let spellings: [Vec<&str>; 4] = [
        vec![
            "--registry",
            &url,
            "-u",
            "owner",
            "-p",
            pw,
            "-o",
            "json",
            "sp",
            "list",
        ],
        vec![
            "sp",
            "list",
            "--registry",
            &url,
            "-u",
            "owner",
            "-p",
            pw,
            "-o",
            "json",
        ],
        vec![
            "-o",
            "json",
            "sp",
            "list",
            "--registry",
            &url,
            "--username",
            "owner",
            "--password",
            pw,
        ],
        vec![
            "--registry",
            &url,
            "sp",
            "--output",
            "JSON",
            "list",
            "-u",
            "owner",
            "-p",
            pw,
        ],
    ];
    for args in spellings {
        let out = berth(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        let listed = json_of(&out);
        assert_eq!(listed[0]["name"], "ci", "{args:?}: {listed}");
    }
    // The environment still works, and a flag beats it.
    let env = [
        ("BERTH_REGISTRY", "http://127.0.0.1:1"),
        ("BERTH_USERNAME", "owner"),
        ("BERTH_PASSWORD", pw),
    ];
    let out = berth_with(&["--registry", &url, "sp", "list", "-o", "json"], &env);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json_of(&out)[0]["name"], "ci");
    // Before a subcommand that is no client, they are refused, not ignored.
    let out = berth(&["--registry", &url, "config", "check"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--registry"),
        "{}",
        text(&out)
    );
}

/// The reader of standard output has gone before berth writes: berth ends
/// quietly with status 0 (docs/cli.md), no panic, nothing on stderr.
#[test]
fn a_closed_stdout_ends_quietly() {
    let dir = tempdir("cli-pipe");
    let server = TestServer::start(&dir.path().join("data"));
    for i in 0..3 {
        ok(&server, &["sp", "create", "--name", &format!("sp-{i}")]);
    }
    let conn = owner(&server);
    let commands: [&[&str]; 5] = [
        &["sp", "list"],
        &["sp", "list", "-o", "json"],
        &["activity", "list"],
        &["update"],
        &["role", "definition", "list"],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().expect("pipe");
        // Closed before the child starts: its first write fails with EPIPE.
        drop(reader);
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .args(&conn)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars() {
            if key.starts_with("BERTH_") {
                cmd.env_remove(key);
            }
        }
        let out = cmd.output().expect("run berth");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("failed printing"),
            "berth {args:?} panicked on a closed pipe: {stderr}"
        );
        assert!(stderr.trim().is_empty(), "berth {args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "berth {args:?}: {stderr}");
    }
}

#[test]
fn errors_are_json_with_output_json_and_text_otherwise() {
    let dir = tempdir("cli-errors");
    let server = TestServer::start(&dir.path().join("data"));
    let conn = owner(&server);
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(conn.iter().map(String::as_str));
        berth(&all)
    };

    // A server error: its code and status.
    let out = run(&["sp", "delete", "--id", "no-such-principal", "-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(out.stderr.is_empty(), "{}", text(&out));
    let e = &json_of(&out)["error"];
    assert_eq!(e["status"], 404, "{e}");
    let code = e["code"].as_str().unwrap_or_default();
    assert!(
        !code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
        "{e}"
    );
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    // The same in text: today's message on stderr, nothing on stdout.
    let out = run(&["sp", "delete", "--id", "no-such-principal"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: 404 Not Found: ") && stderr.contains(code),
        "{stderr}"
    );

    // Wrong password: the registry's 401.
    let url = server.url();
    let out = berth(&[
        "sp",
        "list",
        "--registry",
        &url,
        "-u",
        "owner",
        "-p",
        "wrong",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let e = &json_of(&out)["error"];
    assert_eq!(e["status"], 401, "{e}");
    assert_eq!(e["code"], "UNAUTHORIZED", "{e}");

    // Nobody listening: the CLI's code, no status.
    let nowhere = format!("http://127.0.0.1:{}", closed_port());
    let out = berth(&[
        "-o",
        "json",
        "sp",
        "list",
        "--registry",
        &nowhere,
        "-u",
        "owner",
        "-p",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let e = &json_of(&out)["error"];
    assert_eq!(e["code"], "CONNECTION_FAILED", "{e}");
    assert!(e.get("status").is_none(), "{e}");
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains(&nowhere)),
        "{e}"
    );
    let out = berth(&[
        "sp",
        "list",
        "--registry",
        &nowhere,
        "-u",
        "owner",
        "-p",
        "x",
    ]);
    assert!(out.stdout.is_empty(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with(&format!("error: cannot reach the registry at {nowhere}")),
        "{}",
        text(&out)
    );

    // Refused by the CLI itself: a bad value (clap, exit 2) and a missing
    // confirmation (exit 1).
    let out = run(&["activity", "list", "--since", "last tuesday", "-o", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let e = &json_of(&out)["error"];
    assert_eq!(e["code"], "INVALID_ARGUMENT", "{e}");
    let message = e["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("last tuesday") && message.contains("RFC 3339"),
        "{e}"
    );
    let out = run(&["activity", "list", "--since", "last tuesday"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("24h"),
        "{}",
        text(&out)
    );
    let out = run(&[
        "repository",
        "delete",
        "--repository",
        "app/web",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(json_of(&out)["error"]["code"], "INVALID_ARGUMENT");
}

#[test]
fn update_without_flags_shows_the_settings() {
    let dir = tempdir("cli-update");
    let server = TestServer::start(&dir.path().join("data"));
    let shown = json_of(&ok(&server, &["update", "-o", "json"]));
    assert_eq!(shown["registry"]["anonymousPullEnabled"], false, "{shown}");
    assert_eq!(
        shown["network"]["networkRuleSet"]["defaultAction"], "Allow",
        "{shown}"
    );
    let table = stdout(&ok(&server, &["update"]));
    for header in [
        "ANONYMOUS PULL",
        "ADMIN USER",
        "PUBLIC NETWORK ACCESS",
        "DEFAULT ACTION",
    ] {
        assert!(table.contains(header), "{header} missing:\n{table}");
    }
    // Flags still change (values in any case), and what is shown follows.
    ok(&server, &["update", "--anonymous-pull-enabled", "TRUE"]);
    let shown = json_of(&ok(&server, &["update", "-o", "json"]));
    assert_eq!(shown["registry"]["anonymousPullEnabled"], true, "{shown}");
}

/// Management changes with large before/after snapshots: the table stays
/// within the width (120 off a terminal, or $COLUMNS) and shows what
/// changed; `-o json` keeps the snapshots whole; `--since` takes
/// durations and RFC 3339 times.
#[test]
fn activity_fits_the_width_and_since_takes_durations_and_times() {
    let dir = tempdir("cli-activity");
    let server = TestServer::start(&dir.path().join("data"));
    ok(
        &server,
        &["network-rule", "add", "--ip-address", "127.0.0.0/8"],
    );
    for net in [
        "10.1.0.0/16",
        "10.2.0.0/16",
        "10.3.0.0/16",
        "192.168.77.0/24",
    ] {
        ok(&server, &["network-rule", "add", "--ip-address", net]);
    }
    ok(&server, &["update", "--default-action", "deny"]);
    ok(&server, &["update", "--default-action", "ALLOW"]);
    let repositories: Vec<String> = (0..8)
        .map(|i| format!("--repository=team-{i}/service-with-a-long-name=content/read,content/write,metadata/read"))
        .collect();
    let mut create = vec!["scope-map", "create", "--name", "wide", "--description"];
    let description = "a description long enough to overflow any reasonable column ".repeat(3);
    create.push(&description);
    create.extend(repositories.iter().map(String::as_str));
    ok(&server, &create);

    let full = json_of(&ok(&server, &["activity", "list", "-o", "json"]));
    let entries = full.as_array().expect("array");
    assert!(entries.len() >= 8, "{full}");
    let widest = entries
        .iter()
        .map(|e| e.to_string().len())
        .max()
        .unwrap_or(0);
    assert!(widest > 300, "the test needs wide entries: {widest}");
    assert!(
        entries
            .iter()
            .any(|e| e["after"]["networkRuleSet"]["defaultAction"] == "Deny"
                || e["after"]["defaultAction"] == "Deny"),
        "the JSON keeps the snapshots whole: {full}"
    );

    for (columns, width) in [(None, 120), (Some("80"), 80)] {
        let env: Vec<(&str, &str)> = columns.map(|c| ("COLUMNS", c)).into_iter().collect();
        let conn = owner(&server);
        let mut args = vec!["activity", "list"];
        args.extend(conn.iter().map(String::as_str));
        let out = berth_with(&args, &env);
        assert!(out.status.success(), "{}", text(&out));
        let table = stdout(&out);
        assert!(table.contains("OPERATION"), "{table}");
        for line in table.lines() {
            assert!(
                line.chars().count() <= width,
                "a line of {} characters (> {width}):\n{line}\n{table}",
                line.chars().count()
            );
        }
        // The change is summarised as the keys that changed.
        assert!(table.contains('→'), "{table}");
    }

    let count = |since: &str| {
        json_of(&ok(
            &server,
            &["activity", "list", "-o", "json", "--since", since],
        ))
        .as_array()
        .map(Vec::len)
        .unwrap_or(0)
    };
    let all = entries.len();
    assert_eq!(count("1h30m"), all);
    assert_eq!(count("7d"), all);
    assert_eq!(count("2020-01-01T00:00:00Z"), all);
    assert_eq!(count("2999-01-01T00:00:00Z"), 0);
    // logs take the same forms.
    for since in ["90m", "2020-01-01T00:00:00+02:00"] {
        let out = ok(&server, &["logs", "login", "--since", since, "-o", "json"]);
        assert!(json_of(&out).is_array(), "{}", text(&out));
    }
}

/// `berth serve` with its log going to a file: no colour escapes (the
/// harness's servers run with NO_COLOR; this one does not).
#[test]
fn serve_logs_to_a_file_without_colour() {
    let dir = tempdir("cli-serve-colour");
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let data = dir.path().join("data");
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .env_remove("NO_COLOR")
        .env("BERTH_LOG", "info");
    for (key, _) in std::env::vars() {
        if key.starts_with("BERTH_") {
            cmd.env_remove(key);
        }
    }
    cmd.env(
        "BERTH_AUTH__INITIAL_OWNER_PASSWORD",
        "colour-test-owner-password",
    );
    let mut child = cmd.spawn().expect("spawn berth serve");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut addr = None;
    for _ in 0..50 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some((_, a)) = line.trim().split_once(" listening on http://") {
            addr = Some(a.to_string());
            break;
        }
    }
    // A request, so the log has a request line too.
    if let Some(addr) = &addr {
        if let Ok(mut stream) = std::net::TcpStream::connect(addr) {
            use std::io::Write;
            let _ = stream.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let _ = stream.read_to_end(&mut Vec::new());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let logged = std::fs::read_to_string(&log_path).expect("read log");
    assert!(addr.is_some(), "serve did not start:\n{logged}");
    assert!(!logged.trim().is_empty(), "serve logged nothing");
    assert!(
        !logged.contains("\x1b["),
        "colour escapes in a log file:\n{logged:?}"
    );
}

/// `--registry` is a URL or host[:port] in every command: a bare loopback
/// host:port of a plain-HTTP registry falls back to HTTP, `https://` is
/// obeyed (and fails here), and a path is refused before anything is sent.
/// Without flags the credentials come from the Docker config: `auth`, or an
/// `identitytoken` (the refresh token `docker login` stores).
#[test]
fn registry_addresses_and_docker_config_credentials() {
    let dir = tempdir("cli-address");
    let server = TestServer::start(&dir.path().join("data"));
    let host = server.addr().to_string();
    let pw = server.owner_password().to_string();
    let creds = ["-u", "owner", "-p", pw.as_str()];
    let list = |registry: &str, env: &[(&str, &str)], extra: &[&str]| {
        let mut args = vec!["repository", "list", "--registry", registry, "-o", "json"];
        args.extend_from_slice(extra);
        berth_with(&args, env)
    };
    let out = list(&host, &[], &creds);
    assert!(out.status.success(), "{}", text(&out));
    let out = list(&format!("http://{host}/"), &[], &creds);
    assert!(out.status.success(), "{}", text(&out));
    let out = list(&format!("https://{host}"), &[], &creds);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        json_of(&out)["error"]["code"],
        "CONNECTION_FAILED",
        "{}",
        text(&out)
    );
    let out = list(&format!("http://{host}/some/path"), &[], &creds);
    assert_eq!(
        json_of(&out)["error"]["code"],
        "INVALID_ARGUMENT",
        "{}",
        text(&out)
    );

    // A Docker config with `auth`.
    let config_dir = dir.path().join("docker");
    std::fs::create_dir_all(&config_dir).expect("mkdir");
    let config = config_dir.join("config.json");
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    std::fs::write(
        &config,
        format!(
            r#"{{"auths":{{"{host}":{{"auth":"{}"}}}}}}"#,
            b64(&format!("owner:{pw}"))
        ),
    )
    .expect("write config");
    let env = [("DOCKER_CONFIG", config_dir.to_str().expect("utf-8"))];
    let out = list(&host, &env, &[]);
    assert!(out.status.success(), "{}", text(&out));

    // An identitytoken: a refresh token from the token service, no password.
    let refresh = refresh_token_for(&server, &pw);
    std::fs::write(
        &config,
        format!(
            r#"{{"auths":{{"{host}":{{"auth":"{}","identitytoken":"{refresh}"}}}}}}"#,
            b64("owner:")
        ),
    )
    .expect("write config");
    let out = list(&host, &env, &[]);
    assert!(out.status.success(), "{}", text(&out));
    // A stale one is refused as a credential problem.
    std::fs::write(
        &config,
        format!(
            r#"{{"auths":{{"{host}":{{"auth":"{}","identitytoken":"not.a.token"}}}}}}"#,
            b64("owner:")
        ),
    )
    .expect("write config");
    let out = list(&host, &env, &[]);
    assert_eq!(
        json_of(&out)["error"]["code"],
        "UNAUTHORIZED",
        "{}",
        text(&out)
    );
}

/// A refresh token for the owner, from `POST /oauth2/exchange`.
fn refresh_token_for(server: &TestServer, password: &str) -> String {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let v: Value = runtime.block_on(async {
        http_client()
            .post(format!("{}/oauth2/exchange", server.url()))
            .basic_auth("owner", Some(password))
            .send()
            .await
            .expect("POST /oauth2/exchange")
            .error_for_status()
            .expect("a refresh token")
            .json()
            .await
            .expect("JSON")
    });
    v["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh_token in {v}"))
        .to_string()
}

#[test]
fn version_names_the_commit() {
    let out = berth(&["--version"]);
    assert!(out.status.success(), "{}", text(&out));
    let version = stdout(&out);
    assert!(
        version.starts_with(&format!("berth {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    // Built from a git checkout: the commit is HEAD's.
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|h| h.status.success());
    if let Some(head) = head {
        let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
        assert!(
            version.contains(&format!("(commit {head}")),
            "{version} vs {head}"
        );
    }
}

#[test]
fn completions_and_man_pages_cover_every_command() {
    for (shell, marker) in [
        ("bash", "complete -F _berth"),
        ("zsh", "#compdef berth"),
        ("fish", "complete -c berth"),
    ] {
        let out = berth(&["completions", shell]);
        assert!(out.status.success(), "{}", text(&out));
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}: no {marker}");
        for command in ["serve", "backup", "check-pull", "network-rule"] {
            assert!(script.contains(command), "{shell}: no {command}");
        }
    }
    let out = berth(&["man"]);
    assert!(out.status.success(), "{}", text(&out));
    let page = stdout(&out);
    assert!(
        page.contains(".TH berth 1") && page.contains("(commit "),
        "{page}"
    );
    let dir = tempdir("man");
    let out = berth(&["man", "--dir", dir.path().to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out));
    for page in [
        "berth.1",
        "berth-serve.1",
        "berth-backup-create.1",
        "berth-sp-create.1",
    ] {
        let path = dir.path().join(page);
        let body = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(body.contains(".SH"), "{page}");
    }
}
