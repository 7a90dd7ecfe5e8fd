//! Which upstream repositories a local repository caches: a rule's target
//! matched against the repository, the part its `*` matches carried over
//! to every source.

use std::time::Duration;

use berth_manage::cache::CacheRule;

/// A login for an upstream, from a credential set.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// The credential set it comes from.
    pub credential_set: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("credential_set", &self.credential_set)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// One upstream repository a local repository caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `https://host[:port]`: where requests go.
    pub base: String,
    /// The repository on that registry.
    pub repository: String,
    /// Anonymous when absent.
    pub login: Option<Login>,
    /// The credential set the rule names, even when it no longer exists
    /// (then `login` is absent and the upstream is asked anonymously).
    pub credential_set: Option<String>,
}

impl Source {
    /// `host[:port]/repository`, as messages name it.
    pub fn display(&self) -> String {
        let host = self
            .base
            .strip_prefix("https://")
            .or_else(|| self.base.strip_prefix("http://"))
            .unwrap_or(&self.base);
        format!("{host}/{}", self.repository)
    }

    /// The host, as metrics label it.
    pub fn host(&self) -> &str {
        self.base
            .strip_prefix("https://")
            .or_else(|| self.base.strip_prefix("http://"))
            .unwrap_or(&self.base)
    }
}

/// A repository's cache rule, resolved.
#[derive(Debug, Clone)]
pub struct Route {
    pub rule: String,
    /// Tried in order.
    pub sources: Vec<Source>,
    pub tag_ttl: Duration,
}

/// The part of `repository` the target's `*` matches, `""` for an exact
/// target; `None` when the target does not match.
pub fn target_match<'a>(target: &str, repository: &'a str) -> Option<&'a str> {
    match target.strip_suffix("/*") {
        None => (target == repository).then_some(""),
        Some(prefix) => repository
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|rest| !rest.is_empty()),
    }
}

/// `[http://|https://]host[:port]/path[/*]` with the wildcard filled in.
/// Docker Hub's API host is `registry-1.docker.io`, not `docker.io`.
fn source(raw: &str, rest: &str) -> (String, String) {
    let (scheme, without) = match raw.split_once("://") {
        Some((scheme, without)) => (scheme, without),
        None => ("https", raw),
    };
    let (host, path) = without.split_once('/').unwrap_or((without, ""));
    let host = match host {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    };
    let repository = match path.strip_suffix("/*") {
        Some(prefix) => format!("{prefix}/{rest}"),
        None => path.to_string(),
    };
    (format!("{scheme}://{host}"), repository)
}

impl Route {
    /// The rule's route for `repository`, if its target matches;
    /// `login` looks a credential set up by name.
    pub fn resolve(
        rule: &CacheRule,
        repository: &str,
        login: impl Fn(&str) -> Option<Login>,
    ) -> Option<Route> {
        let rest = target_match(&rule.target, repository)?;
        let sources = rule
            .upstreams
            .iter()
            .map(|u| {
                let (base, repository) = source(&u.source, rest);
                Source {
                    base,
                    repository,
                    login: u.credential_set.as_deref().and_then(&login),
                    credential_set: u.credential_set.clone(),
                }
            })
            .collect();
        Some(Route {
            rule: rule.name.clone(),
            sources,
            tag_ttl: Duration::from_secs(rule.tag_ttl_seconds),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_manage::cache::Upstream;

    #[test]
    fn targets_match_exactly_or_below_their_prefix() {
        assert_eq!(target_match("hub/*", "hub/nginx"), Some("nginx"));
        assert_eq!(target_match("hub/*", "hub/a/b"), Some("a/b"));
        assert_eq!(target_match("hub/*", "hub"), None);
        assert_eq!(target_match("hub/*", "hubx/nginx"), None);
        assert_eq!(target_match("mirror/alpine", "mirror/alpine"), Some(""));
        assert_eq!(target_match("mirror/alpine", "mirror/alpine2"), None);
    }

    #[test]
    fn sources_carry_the_wildcard_and_docker_hub_is_its_api_host() {
        let rule = CacheRule {
            name: "hub".into(),
            target: "hub/*".into(),
            upstreams: vec![
                Upstream {
                    source: "docker.io/library/*".into(),
                    credential_set: Some("dh".into()),
                },
                Upstream {
                    source: "http://127.0.0.1:5001/mirror/*".into(),
                    credential_set: Some("gone".into()),
                },
            ],
            tag_ttl_seconds: 60,
            ..CacheRule::default()
        };
        let route = Route::resolve(&rule, "hub/nginx", |name| {
            (name == "dh").then(|| Login {
                credential_set: "dh".into(),
                username: "u".into(),
                password: "p".into(),
            })
        })
        .expect("matches");
        assert_eq!(route.sources[0].base, "https://registry-1.docker.io");
        assert_eq!(route.sources[0].repository, "library/nginx");
        assert!(route.sources[0].login.is_some());
        assert_eq!(route.sources[1].base, "http://127.0.0.1:5001");
        assert_eq!(route.sources[1].display(), "127.0.0.1:5001/mirror/nginx");
        assert_eq!(route.sources[1].login, None);
        assert_eq!(route.sources[1].credential_set.as_deref(), Some("gone"));
        assert!(Route::resolve(&rule, "other/nginx", |_| None).is_none());
    }
}
