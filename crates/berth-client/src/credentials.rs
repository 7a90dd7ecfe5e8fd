//! Credentials for a registry host, found the way container clients find
//! them, in one resolver the management commands and the diagnostics
//! share:
//!
//! 1. given on the command line (`--username`/`--password`, or a file the
//!    command was pointed at: `--pull-secret`, `--docker-config`);
//! 2. `BERTH_USERNAME` / `BERTH_PASSWORD`;
//! 3. Docker config files — `$DOCKER_CONFIG/config.json` or
//!    `~/.docker/config.json`, and for `check-pull` also the kubelet's
//!    locations. In each, as Docker reads it: the host's `credHelpers`
//!    entry, else `credsStore` (by running `docker-credential-<name> get`),
//!    else its `auths` entry (`auth`, `username`/`password`, or
//!    `identitytoken` — the refresh token `docker login` stores instead of
//!    a password).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::Value;

/// The user name under which a refresh token is presented as a password
/// (berth's, and the managed registry's, convention).
pub const REFRESH_TOKEN_USER: &str = "00000000-0000-0000-0000-000000000000";

/// The user name under which an issuer's token (a Kubernetes
/// service-account token) is presented as a password.
pub const FEDERATED_USER: &str = "federated";

/// What a credential helper's `Username` is when its `Secret` is an
/// identity (refresh) token, as Docker's helpers store it.
const HELPER_TOKEN_USER: &str = "<token>";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// A refresh token (`identitytoken`): exchanged at the token endpoint
    /// with `grant_type=refresh_token`, or presented as the password of
    /// [`REFRESH_TOKEN_USER`].
    pub identity_token: Option<String>,
}

impl Credentials {
    pub fn password(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
            identity_token: None,
        }
    }

    /// The Basic credentials these stand for.
    pub fn basic(&self) -> (String, String) {
        match &self.identity_token {
            Some(token) => (REFRESH_TOKEN_USER.to_string(), token.clone()),
            None => (self.username.clone(), self.password.clone()),
        }
    }

    /// `Basic base64(user:password)`.
    pub fn basic_header(&self) -> String {
        let (u, p) = self.basic();
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    }

    /// Who these credentials say they are, for messages.
    pub fn describe(&self) -> String {
        if self.username == FEDERATED_USER {
            return "a service-account token (federated)".to_string();
        }
        match &self.identity_token {
            Some(_) if self.username.is_empty() || self.username == REFRESH_TOKEN_USER => {
                "a refresh token (identitytoken)".to_string()
            }
            Some(_) => format!(
                "user '{}' with a refresh token (identitytoken)",
                self.username
            ),
            None => format!("user '{}'", self.username),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{0} is not JSON: {1}")]
    NotJson(String, String),
    #[error("{0}: {1}")]
    Malformed(String, String),
    #[error("cannot read {0}: {1}")]
    Unreadable(String, String),
    #[error("the credential helper docker-credential-{helper} failed: {reason}")]
    Helper { helper: String, reason: String },
}

/// What one place holds for a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(Credentials),
    /// No entry for the host; these are the hosts it does have.
    NoEntry {
        hosts: Vec<String>,
    },
}

/// Where credentials are looked for, in order.
#[derive(Debug, Clone)]
pub enum Source {
    /// Given directly (`what` says how: "--username", "BERTH_USERNAME").
    Given {
        credentials: Credentials,
        what: String,
    },
    /// A Docker config file or a pull secret (a `dockerconfigjson` Secret
    /// or its content). A missing file is skipped.
    File(PathBuf),
}

/// The outcome of a resolution.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    /// The first credentials found, and where ("--username", a file, a
    /// helper).
    pub found: Option<(Credentials, String)>,
    /// The places looked in that had nothing for the host, with the hosts
    /// each does have.
    pub searched: Vec<(String, Vec<String>)>,
}

/// Looks for `host`'s credentials in `sources`, in order.
pub fn resolve(host: &str, sources: &[Source]) -> Result<Resolution, CredentialError> {
    let mut resolution = Resolution::default();
    for source in sources {
        match source {
            Source::Given { credentials, what } => {
                resolution.found = Some((credentials.clone(), what.clone()));
                return Ok(resolution);
            }
            Source::File(path) => {
                let Some(config) = DockerConfig::load(path)? else {
                    continue;
                };
                let (lookup, from) = config.find(host)?;
                match lookup {
                    Lookup::Found(c) => {
                        resolution.found = Some((c, from));
                        return Ok(resolution);
                    }
                    Lookup::NoEntry { hosts } => resolution.searched.push((from, hosts)),
                }
            }
        }
    }
    Ok(resolution)
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("config.json");
    }
    home().join(".docker").join("config.json")
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Where a kubelet looks for a Docker config, in its order: its root
/// directory, then the Docker config of the user it runs as, then `/.docker`.
pub fn kubelet_config_paths() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("/var/lib/kubelet/config.json")];
    for p in [docker_config_path(), PathBuf::from("/.docker/config.json")] {
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    paths
}

/// The sources of the BERTH_* environment, if both variables are set.
pub fn environment_source() -> Option<Source> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let (u, p) = (var("BERTH_USERNAME")?, var("BERTH_PASSWORD")?);
    Some(Source::Given {
        credentials: Credentials::password(&u, &p),
        what: "BERTH_USERNAME/BERTH_PASSWORD".into(),
    })
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

/// Does an `auths` key name `host`? Keys may carry a scheme and a path
/// (`https://host/v1/`).
fn key_names(key: &str, host: &str) -> bool {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    key.split('/').next() == Some(host)
}

/// A Docker config file (or pull secret) as read.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// The file, for messages.
    pub what: String,
    pub path: Option<PathBuf>,
    value: Value,
}

impl DockerConfig {
    /// Parses a config file's or a pull secret's text.
    pub fn parse(text: &str, what: &str) -> Result<DockerConfig, CredentialError> {
        let mut value: Value = serde_json::from_str(text)
            .map_err(|e| CredentialError::NotJson(what.into(), e.to_string()))?;
        // A Secret object: data[".dockerconfigjson"] is base64 of the config.
        if let Some(encoded) = value
            .get("data")
            .and_then(|d| d.get(".dockerconfigjson"))
            .and_then(Value::as_str)
        {
            let decoded = b64(encoded).ok_or_else(|| {
                CredentialError::Malformed(
                    what.into(),
                    "data[.dockerconfigjson] is not base64".into(),
                )
            })?;
            value = serde_json::from_slice(&decoded).map_err(|e| {
                CredentialError::NotJson(format!("{what} (.dockerconfigjson)"), e.to_string())
            })?;
        }
        if !value.is_object() {
            return Err(CredentialError::Malformed(
                what.into(),
                "expected a JSON object".into(),
            ));
        }
        Ok(DockerConfig {
            what: what.into(),
            path: None,
            value,
        })
    }

    /// Reads a config file (or a directory holding `config.json`);
    /// `None` if there is none.
    pub fn load(path: &Path) -> Result<Option<DockerConfig>, CredentialError> {
        let path = if path.is_dir() {
            path.join("config.json")
        } else {
            path.to_path_buf()
        };
        let what = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CredentialError::Unreadable(what, e.to_string())),
        };
        let mut config = DockerConfig::parse(&text, &what)?;
        config.path = Some(path);
        Ok(Some(config))
    }

    /// An empty config for `path` (when there is no file yet).
    pub fn empty(path: &Path) -> DockerConfig {
        DockerConfig {
            what: path.display().to_string(),
            path: Some(path.to_path_buf()),
            value: serde_json::json!({}),
        }
    }

    /// The credential helper Docker would use for `host`.
    pub fn helper_for(&self, host: &str) -> Option<String> {
        let named = self
            .value
            .get("credHelpers")
            .and_then(Value::as_object)
            .and_then(|h| h.iter().find(|(k, _)| key_names(k, host)))
            .and_then(|(_, v)| v.as_str());
        named
            .or_else(|| self.value.get("credsStore").and_then(Value::as_str))
            .filter(|h| !h.is_empty())
            .map(str::to_string)
    }

    /// The hosts the file knows of (auths and credHelpers keys).
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts = Vec::new();
        for section in ["auths", "credHelpers"] {
            if let Some(map) = self.value.get(section).and_then(Value::as_object) {
                for k in map.keys() {
                    if !hosts.contains(k) {
                        hosts.push(k.clone());
                    }
                }
            }
        }
        hosts
    }

    /// `host`'s credentials: through its helper first (when the helper
    /// has none, the file's own entry), and where they came from.
    pub fn find(&self, host: &str) -> Result<(Lookup, String), CredentialError> {
        if let Some(helper) = self.helper_for(host) {
            if let Some(c) = helper_get(&helper, host)? {
                return Ok((
                    Lookup::Found(c),
                    format!("docker-credential-{helper} (named in {})", self.what),
                ));
            }
        }
        Ok((self.file_entry(host)?, self.what.clone()))
    }

    /// `host`'s `auths` entry.
    pub fn file_entry(&self, host: &str) -> Result<Lookup, CredentialError> {
        let what = &self.what;
        let auths = self
            .value
            .get("auths")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let Some((_, entry)) = auths.iter().find(|(k, _)| key_names(k, host)) else {
            return Ok(Lookup::NoEntry {
                hosts: self.hosts(),
            });
        };
        let token = entry
            .get("identitytoken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        let (mut username, mut password) = (String::new(), String::new());
        if let Some(auth) = entry
            .get("auth")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            let decoded = b64(auth)
                .and_then(|d| String::from_utf8(d).ok())
                .ok_or_else(|| {
                    CredentialError::Malformed(
                        what.clone(),
                        format!("auths[{host}].auth is not base64 of user:password"),
                    )
                })?;
            let (u, p) = decoded.split_once(':').ok_or_else(|| {
                CredentialError::Malformed(
                    what.clone(),
                    format!("auths[{host}].auth is not user:password"),
                )
            })?;
            (username, password) = (u.to_string(), p.to_string());
        } else if let Some(u) = entry.get("username").and_then(Value::as_str) {
            username = u.to_string();
            password = entry
                .get("password")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
        }
        if token.is_none() && (username.is_empty() || password.is_empty()) {
            return Err(CredentialError::Malformed(
                what.clone(),
                format!("auths[{host}] has neither a user and password nor an identitytoken"),
            ));
        }
        Ok(Lookup::Found(Credentials {
            username,
            password,
            identity_token: token,
        }))
    }

    /// Stores credentials for `host` as Docker would: through the helper
    /// the file names for it, else in `auths` (the file is written 0600).
    /// Returns where they went.
    pub fn store(
        &mut self,
        host: &str,
        username: &str,
        password: &str,
    ) -> Result<String, CredentialError> {
        if let Some(helper) = self.helper_for(host) {
            helper_store(&helper, host, username, password)?;
            // Docker keeps an empty entry, so `docker logout` and listings see it.
            self.set_entry(host, Some(serde_json::json!({})))?;
            return Ok(format!("docker-credential-{helper}"));
        }
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        self.set_entry(host, Some(serde_json::json!({ "auth": auth })))?;
        Ok(self.what.clone())
    }

    /// Forgets `host`'s credentials (helper and file). Returns whether
    /// there were any.
    pub fn erase(&mut self, host: &str) -> Result<bool, CredentialError> {
        let mut had = false;
        if let Some(helper) = self.helper_for(host) {
            had |= helper_erase(&helper, host)?;
        }
        had |=
            matches!(self.file_entry(host), Ok(Lookup::Found(_)) | Err(_)) || self.has_entry(host);
        self.set_entry(host, None)?;
        Ok(had)
    }

    fn has_entry(&self, host: &str) -> bool {
        self.value
            .get("auths")
            .and_then(Value::as_object)
            .is_some_and(|a| a.keys().any(|k| key_names(k, host)))
    }

    /// Sets or removes `host`'s `auths` entry and writes the file.
    fn set_entry(&mut self, host: &str, entry: Option<Value>) -> Result<(), CredentialError> {
        if !self.value.get("auths").is_some_and(Value::is_object) {
            self.value["auths"] = serde_json::json!({});
        }
        if let Some(auths) = self.value["auths"].as_object_mut() {
            let keys: Vec<String> = auths
                .keys()
                .filter(|k| key_names(k, host))
                .cloned()
                .collect();
            for k in keys {
                auths.remove(&k);
            }
            if let Some(entry) = entry {
                auths.insert(host.to_string(), entry);
            }
        }
        self.write()
    }

    fn write(&self) -> Result<(), CredentialError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let fail =
            |e: std::io::Error| CredentialError::Unreadable(self.what.clone(), e.to_string());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(fail)?;
        // A file that existed keeps its mode on open: secrets go in 0600.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(fail)?;
        }
        let text = serde_json::to_string_pretty(&self.value).unwrap_or_default();
        file.write_all(text.as_bytes()).map_err(fail)?;
        file.write_all(b"\n").map_err(fail)
    }
}

/// Runs `docker-credential-<helper> <verb>` with `input` on stdin.
fn run_helper(helper: &str, verb: &str, input: &str) -> Result<(bool, String), CredentialError> {
    let program = format!("docker-credential-{helper}");
    let fail = |reason: String| CredentialError::Helper {
        helper: helper.into(),
        reason,
    };
    let mut child = Command::new(&program)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {program} (is it on PATH?): {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Ok((
        out.status.success(),
        if text.is_empty() { err } else { text },
    ))
}

/// `get`: the helper's credentials for `host`, `None` if it has none.
fn helper_get(helper: &str, host: &str) -> Result<Option<Credentials>, CredentialError> {
    let (ok, out) = run_helper(helper, "get", host)?;
    if !ok {
        // The protocol's "not found" (any helper says it this way).
        if out.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(CredentialError::Helper {
            helper: helper.into(),
            reason: format!("get {host}: {out}"),
        });
    }
    let v: Value = serde_json::from_str(&out).map_err(|e| CredentialError::Helper {
        helper: helper.into(),
        reason: format!("get {host} did not answer JSON: {e}"),
    })?;
    let field = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (username, secret) = (field("Username"), field("Secret"));
    if secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if username == HELPER_TOKEN_USER {
        Credentials {
            username: String::new(),
            password: String::new(),
            identity_token: Some(secret),
        }
    } else {
        Credentials::password(&username, &secret)
    }))
}

fn helper_store(
    helper: &str,
    host: &str,
    username: &str,
    password: &str,
) -> Result<(), CredentialError> {
    let input = serde_json::json!({ "ServerURL": host, "Username": username, "Secret": password })
        .to_string();
    let (ok, out) = run_helper(helper, "store", &input)?;
    if ok {
        Ok(())
    } else {
        Err(CredentialError::Helper {
            helper: helper.into(),
            reason: format!("store {host}: {out}"),
        })
    }
}

fn helper_erase(helper: &str, host: &str) -> Result<bool, CredentialError> {
    let (ok, out) = run_helper(helper, "erase", host)?;
    if ok {
        return Ok(true);
    }
    if out.to_ascii_lowercase().contains("credentials not found") {
        return Ok(false);
    }
    Err(CredentialError::Helper {
        helper: helper.into(),
        reason: format!("erase {host}: {out}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str, host: &str) -> Credentials {
        match DockerConfig::parse(text, "c")
            .expect("parse")
            .file_entry(host)
            .expect("lookup")
        {
            Lookup::Found(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_every_entry_form() {
        let c = found(
            r#"{"auths":{"reg.example:5000":{"auth":"dXNlcjpwYXNz"}}}"#,
            "reg.example:5000",
        );
        assert_eq!(c, Credentials::password("user", "pass"));
        let c = found(
            r#"{"auths":{"https://reg.example/v1/":{"username":"u","password":"p"}}}"#,
            "reg.example",
        );
        assert_eq!(c.basic(), ("u".into(), "p".into()));
        // docker login against a registry that returns a refresh token.
        let c = found(
            r#"{"auths":{"reg.example":{"auth":"b3duZXI6","identitytoken":"eyJ.x.y"}}}"#,
            "reg.example",
        );
        assert_eq!(c.username, "owner");
        assert_eq!(c.identity_token.as_deref(), Some("eyJ.x.y"));
        assert_eq!(c.basic(), (REFRESH_TOKEN_USER.into(), "eyJ.x.y".into()));
    }

    #[test]
    fn secrets_missing_hosts_and_bad_files() {
        let config = r#"{"auths":{"reg.example:5000":{"auth":"dXNlcjpwYXNz"}}}"#;
        let secret = format!(
            r#"{{"kind":"Secret","type":"kubernetes.io/dockerconfigjson","data":{{".dockerconfigjson":"{}"}}}}"#,
            base64::engine::general_purpose::STANDARD.encode(config)
        );
        let parsed = DockerConfig::parse(&secret, "s").expect("secret");
        assert!(matches!(
            parsed.file_entry("reg.example:5000"),
            Ok(Lookup::Found(_))
        ));
        assert_eq!(
            parsed.file_entry("reg.exmaple:5000").expect("lookup"),
            Lookup::NoEntry {
                hosts: vec!["reg.example:5000".into()]
            }
        );
        assert!(DockerConfig::parse("nope", "s").is_err());
        assert!(DockerConfig::parse(r#"{"auths":{"h":{}}}"#, "s")
            .expect("parse")
            .file_entry("h")
            .is_err());
    }

    #[test]
    fn helpers_are_chosen_as_docker_chooses_them() {
        let c = DockerConfig::parse(
            r#"{"credsStore":"desktop","credHelpers":{"reg.example":"ecr-login"}}"#,
            "c",
        )
        .expect("parse");
        assert_eq!(c.helper_for("reg.example").as_deref(), Some("ecr-login"));
        assert_eq!(c.helper_for("other.example").as_deref(), Some("desktop"));
        let c = DockerConfig::parse(r#"{"auths":{}}"#, "c").expect("parse");
        assert_eq!(c.helper_for("reg.example"), None);
    }

    #[test]
    fn files_come_before_later_sources_and_missing_files_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.json");
        std::fs::write(&a, r#"{"auths":{"other:1":{"auth":"dTpw"}}}"#).expect("write");
        let b = dir.path().join("b.json");
        std::fs::write(&b, r#"{"auths":{"reg:5000":{"auth":"dXNlcjpwYXNz"}}}"#).expect("write");
        let sources = [
            Source::File(dir.path().join("missing.json")),
            Source::File(a.clone()),
            Source::File(b.clone()),
        ];
        let r = resolve("reg:5000", &sources).expect("resolve");
        let (c, from) = r.found.expect("found");
        assert_eq!(c, Credentials::password("user", "pass"));
        assert_eq!(from, b.display().to_string());
        assert_eq!(
            r.searched,
            vec![(a.display().to_string(), vec!["other:1".to_string()])]
        );
    }

    #[test]
    fn store_and_erase_keep_the_rest_of_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"keep:1":{"auth":"dTpw"}},"psFormat":"x"}"#,
        )
        .expect("write");
        let mut c = DockerConfig::load(&path).expect("load").expect("exists");
        c.store("reg:5000", "user", "pass").expect("store");
        let c2 = DockerConfig::load(&path).expect("load").expect("exists");
        assert!(matches!(c2.file_entry("reg:5000"), Ok(Lookup::Found(_))));
        assert!(matches!(c2.file_entry("keep:1"), Ok(Lookup::Found(_))));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let mut c3 = c2;
        assert!(c3.erase("reg:5000").expect("erase"));
        let c4 = DockerConfig::load(&path).expect("load").expect("exists");
        assert!(matches!(
            c4.file_entry("reg:5000"),
            Ok(Lookup::NoEntry { .. })
        ));
        assert!(matches!(c4.file_entry("keep:1"), Ok(Lookup::Found(_))));
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("psFormat"), "{text}");
    }
}
