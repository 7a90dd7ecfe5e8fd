//! Credentials the way a kubelet finds them: a `kubernetes.io/dockerconfigjson`
//! pull secret (the Secret as JSON, or its `.dockerconfigjson` content), or a
//! Docker `config.json`. The registry host must match an `auths` key exactly
//! (optionally with a scheme); otherwise the pull goes anonymous.

use base64::Engine;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// What the secret or config file says about `host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(Credentials),
    /// No entry for the host; these are the hosts it does have.
    NoEntry {
        hosts: Vec<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{0} is not JSON: {1}")]
    NotJson(String, String),
    #[error("{0}: {1}")]
    Malformed(String, String),
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

/// Finds credentials for `host` in the text of a pull secret or a Docker
/// config file (`what` names it in errors).
pub fn lookup(text: &str, host: &str, what: &str) -> Result<Lookup, CredentialError> {
    let mut value: Value = serde_json::from_str(text)
        .map_err(|e| CredentialError::NotJson(what.into(), e.to_string()))?;
    // A Secret object: data[".dockerconfigjson"] is base64 of the config.
    if let Some(encoded) = value
        .get("data")
        .and_then(|d| d.get(".dockerconfigjson"))
        .and_then(Value::as_str)
    {
        let decoded = b64(encoded).ok_or_else(|| {
            CredentialError::Malformed(what.into(), "data[.dockerconfigjson] is not base64".into())
        })?;
        value = serde_json::from_slice(&decoded).map_err(|e| {
            CredentialError::NotJson(format!("{what} (.dockerconfigjson)"), e.to_string())
        })?;
    }
    let auths = value
        .get("auths")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let hosts: Vec<String> = auths.keys().cloned().collect();
    let entry = auths.iter().find(|(k, _)| {
        let key = k
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        key == host
    });
    let Some((_, entry)) = entry else {
        return Ok(Lookup::NoEntry { hosts });
    };
    if let Some(auth) = entry.get("auth").and_then(Value::as_str) {
        let decoded = b64(auth)
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| {
                CredentialError::Malformed(
                    what.into(),
                    format!("auths[{host}].auth is not base64 of user:password"),
                )
            })?;
        let (u, p) = decoded.split_once(':').ok_or_else(|| {
            CredentialError::Malformed(
                what.into(),
                format!("auths[{host}].auth is not user:password"),
            )
        })?;
        return Ok(Lookup::Found(Credentials {
            username: u.into(),
            password: p.into(),
        }));
    }
    match (
        entry.get("username").and_then(Value::as_str),
        entry.get("password").and_then(Value::as_str),
    ) {
        (Some(u), Some(p)) => Ok(Lookup::Found(Credentials {
            username: u.into(),
            password: p.into(),
        })),
        _ => Err(CredentialError::Malformed(
            what.into(),
            format!("auths[{host}] has neither auth nor username/password"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_credentials_in_secrets_and_configs() {
        let config = r#"{"auths":{"reg.example:5000":{"auth":"dXNlcjpwYXNz"}}}"#;
        assert_eq!(
            lookup(config, "reg.example:5000", "c").expect("lookup"),
            Lookup::Found(Credentials {
                username: "user".into(),
                password: "pass".into()
            })
        );
        let secret = format!(
            r#"{{"kind":"Secret","type":"kubernetes.io/dockerconfigjson","data":{{".dockerconfigjson":"{}"}}}}"#,
            base64::engine::general_purpose::STANDARD.encode(config)
        );
        assert!(matches!(
            lookup(&secret, "reg.example:5000", "s").expect("lookup"),
            Lookup::Found(_)
        ));
        assert_eq!(
            lookup(&secret, "reg.exmaple:5000", "s").expect("lookup"),
            Lookup::NoEntry {
                hosts: vec!["reg.example:5000".into()]
            }
        );
        assert!(lookup("nope", "x", "s").is_err());
    }
}
