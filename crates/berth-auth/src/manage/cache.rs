//! Cache rules and credential sets: registry settings kept beside the
//! network rules (each list one setting, changed compare-and-set so nodes
//! never lose each other's changes, every change in the activity log).
//! A credential set's password is sealed with AES-256-GCM under a key kept
//! with the registry's other keys (created once, shared by every node); it
//! is never returned, and the activity log shows only the user name.

use base64::Engine as _;
use berth_manage::cache::{
    CacheRule, CreateCacheRule, CreateCredentialSet, CredentialSet, UpdateCacheRule,
    UpdateCredentialSet, Upstream,
};
use berth_metadata::Activity;
use berth_util::{now, rfc3339};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::activity;
use crate::cache_config::CacheSnapshot;
use crate::model::Principal;
use crate::service::AuthService;
use crate::AuthError;

const SETTING_RULES: &str = "cacheRules";
const SETTING_SETS: &str = "credentialSets";
const SETTING_SEALING_KEY: &str = "sealingKey";
/// How often a compare-and-set change is retried when another node
/// changed the list in between.
const ATTEMPTS: usize = 8;
const DEFAULT_TAG_TTL: u64 = 300;
const MAX_UPSTREAMS: usize = 8;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RuleRecord {
    name: String,
    target: String,
    upstreams: Vec<Upstream>,
    tag_ttl_seconds: u64,
    evict_unused_days: Option<u32>,
    created_at: i64,
    updated_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SetRecord {
    name: String,
    username: String,
    /// base64(nonce || AES-256-GCM ciphertext and tag), with the set's
    /// name as associated data.
    sealed: String,
    created_at: i64,
    updated_at: i64,
}

fn invalid(field: &str, reason: impl std::fmt::Display) -> AuthError {
    AuthError::InvalidRequest(format!("{field}: {reason}"))
}

fn check_name(what: &str, name: &str) -> Result<(), AuthError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            what,
            format!("'{name}' is not a name: give 1 to 64 letters, digits, '-', '_' or '.'"),
        ))
    }
}

/// A target is a repository or `prefix/*`.
fn check_target(target: &str) -> Result<(), AuthError> {
    let repo = target.strip_suffix("/*").unwrap_or(target);
    repo.parse::<berth_types::RepositoryName>()
        .map(|_| ())
        .map_err(|e| {
            invalid(
                "target",
                format!("'{target}': {e} (give a repository or prefix/*)"),
            )
        })
}

/// A source is `[http://|https://]host[:port]/repository[/*]`, with `/*`
/// exactly when the target has it.
fn check_source(source: &str, wildcard: bool) -> Result<(), AuthError> {
    let rest = source
        .strip_prefix("https://")
        .or_else(|| source.strip_prefix("http://"))
        .unwrap_or(source);
    let Some((host, path)) = rest.split_once('/') else {
        return Err(invalid(
            "source",
            format!(
                "'{source}' names no repository (give host/repository, e.g. docker.io/library/*)"
            ),
        ));
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    if !host_ok {
        return Err(invalid(
            "source",
            format!("'{host}' is not a registry host"),
        ));
    }
    let (repo, has_wildcard) = match path.strip_suffix("/*") {
        Some(prefix) => (prefix, true),
        None => (path, false),
    };
    if has_wildcard != wildcard {
        return Err(invalid(
            "source",
            format!(
                "'{source}': a source ends in /* exactly when the target does (the part the * matches is carried over)"
            ),
        ));
    }
    repo.parse::<berth_types::RepositoryName>()
        .map(|_| ())
        .map_err(|e| invalid("source", format!("'{source}': {e}")))
}

/// Whether two targets could both match one repository.
fn overlaps(a: &str, b: &str) -> bool {
    match (a.strip_suffix("/*"), b.strip_suffix("/*")) {
        (None, None) => a == b,
        (Some(p), None) => b.starts_with(&format!("{p}/")),
        (None, Some(p)) => a.starts_with(&format!("{p}/")),
        (Some(p), Some(q)) => {
            p == q || p.starts_with(&format!("{q}/")) || q.starts_with(&format!("{p}/"))
        }
    }
}

fn view(r: &RuleRecord) -> CacheRule {
    CacheRule {
        name: r.name.clone(),
        target: r.target.clone(),
        upstreams: r.upstreams.clone(),
        tag_ttl_seconds: r.tag_ttl_seconds,
        evict_unused_days: r.evict_unused_days,
        created_at: rfc3339(r.created_at),
        updated_at: rfc3339(r.updated_at),
    }
}

/// The rules whose upstreams log in with credential set `name`.
fn rules_using(rules: &[RuleRecord], name: &str) -> Vec<String> {
    rules
        .iter()
        .filter(|r| {
            r.upstreams
                .iter()
                .any(|u| u.credential_set.as_deref() == Some(name))
        })
        .map(|r| r.name.clone())
        .collect()
}

fn set_view(s: &SetRecord, rules: &[RuleRecord]) -> CredentialSet {
    CredentialSet {
        name: s.name.clone(),
        username: s.username.clone(),
        used_by: rules_using(rules, &s.name),
        created_at: rfc3339(s.created_at),
        updated_at: rfc3339(s.updated_at),
    }
}

fn internal(e: impl std::fmt::Display) -> AuthError {
    AuthError::Internal(e.to_string())
}

/// Whether a rule's target (`repo` or `prefix/*`) covers `repository`.
fn target_matches(target: &str, repository: &str) -> bool {
    match target.strip_suffix("/*") {
        None => target == repository,
        Some(prefix) => repository
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|rest| !rest.is_empty()),
    }
}

fn unseal(key: &LessSafeKey, set: &SetRecord) -> Result<(String, String), AuthError> {
    let name = &set.name;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&set.sealed)
        .map_err(|_| AuthError::Internal(format!("credential set '{name}' is unreadable")))?;
    if raw.len() < NONCE_LEN {
        return Err(AuthError::Internal(format!(
            "credential set '{name}' is unreadable"
        )));
    }
    let (nonce, sealed) = raw.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(internal)?;
    let mut data = sealed.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(name.as_bytes()), &mut data)
        .map_err(|_| AuthError::Internal(format!("credential set '{name}' does not unseal")))?;
    let password = String::from_utf8(plain.to_vec()).map_err(internal)?;
    Ok((set.username.clone(), password))
}

impl AuthService {
    async fn load<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<(Option<String>, Vec<T>), AuthError> {
        let raw = self.store.setting(key).await?;
        let list = match &raw {
            Some(text) => serde_json::from_str(text).map_err(|e| {
                AuthError::Internal(format!("the stored {key} are unreadable: {e}"))
            })?,
            None => Vec::new(),
        };
        Ok((raw, list))
    }

    /// Reads the list under `key`, lets `change` edit it, and stores it if
    /// nobody changed it meanwhile (else tries again).
    async fn change_list<T, R>(
        &self,
        key: &str,
        mut change: impl FnMut(&mut Vec<T>) -> Result<(R, Activity), AuthError>,
    ) -> Result<R, AuthError>
    where
        T: Serialize + DeserializeOwned,
    {
        for _ in 0..ATTEMPTS {
            let (before, mut list) = self.load::<T>(key).await?;
            let (result, entry) = change(&mut list)?;
            let after = serde_json::to_string(&list).map_err(internal)?;
            if self
                .store
                .replace_setting(key, before.as_deref(), &after, &entry)
                .await?
            {
                if key == SETTING_RULES || key == SETTING_SETS {
                    self.reload_cache_config().await?;
                }
                return Ok(result);
            }
        }
        Err(AuthError::Conflict(format!(
            "the {key} kept changing under this change (other nodes are changing them too); try again"
        )))
    }

    fn cache_snapshot(&self) -> std::sync::Arc<CacheSnapshot> {
        self.cache_config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the rules and credential sets if their stored text
    /// changed (another node, or this one, changed them).
    pub(crate) async fn reload_cache_config(&self) -> Result<(), AuthError> {
        let raw_rules = self.store.setting(SETTING_RULES).await?;
        let raw_sets = self.store.setting(SETTING_SETS).await?;
        let current = self.cache_snapshot();
        if current.raw_rules == raw_rules && current.raw_sets == raw_sets {
            return Ok(());
        }
        let rules: Vec<RuleRecord> = match &raw_rules {
            Some(text) => serde_json::from_str(text).map_err(internal)?,
            None => Vec::new(),
        };
        let sets: Vec<SetRecord> = match &raw_sets {
            Some(text) => serde_json::from_str(text).map_err(internal)?,
            None => Vec::new(),
        };
        let mut logins = std::collections::HashMap::new();
        if !sets.is_empty() {
            let key = self.sealing_key().await?;
            for set in &sets {
                match unseal(&key, set) {
                    Ok(login) => {
                        logins.insert(set.name.clone(), login);
                    }
                    Err(e) => {
                        tracing::warn!(set = %set.name, error = %e, "a credential set does not unseal; its upstreams are asked anonymously")
                    }
                }
            }
        }
        let snapshot = CacheSnapshot {
            raw_rules,
            raw_sets,
            rules: rules.iter().map(view).collect(),
            logins,
        };
        *self.cache_config.write().unwrap_or_else(|p| p.into_inner()) =
            std::sync::Arc::new(snapshot);
        Ok(())
    }

    /// The cache rule whose target matches `repository`, if any (from
    /// memory: this is on every pull's path).
    pub fn cache_rule_for(&self, repository: &str) -> Option<CacheRule> {
        self.cache_snapshot()
            .rules
            .iter()
            .find(|r| target_matches(&r.target, repository))
            .cloned()
    }

    /// Every cache rule, from memory.
    pub fn cached_rules(&self) -> Vec<CacheRule> {
        self.cache_snapshot().rules.clone()
    }

    /// A credential set's user name and password, unsealed, from memory.
    pub fn cache_login(&self, credential_set: &str) -> Option<(String, String)> {
        self.cache_snapshot().logins.get(credential_set).cloned()
    }

    async fn rules(&self) -> Result<Vec<RuleRecord>, AuthError> {
        Ok(self.load(SETTING_RULES).await?.1)
    }

    async fn sets(&self) -> Result<Vec<SetRecord>, AuthError> {
        Ok(self.load(SETTING_SETS).await?.1)
    }

    pub async fn cache_rules(&self) -> Result<Vec<CacheRule>, AuthError> {
        Ok(self.rules().await?.iter().map(view).collect())
    }

    pub async fn cache_rule(&self, name: &str) -> Result<CacheRule, AuthError> {
        self.rules()
            .await?
            .iter()
            .find(|r| r.name == name)
            .map(view)
            .ok_or_else(|| AuthError::NotFound(format!("cache rule '{name}'")))
    }

    /// Every upstream must name an existing credential set, if any.
    async fn check_upstreams(&self, target: &str, upstreams: &[Upstream]) -> Result<(), AuthError> {
        if upstreams.is_empty() || upstreams.len() > MAX_UPSTREAMS {
            return Err(invalid(
                "upstreams",
                format!("give 1 to {MAX_UPSTREAMS} upstreams, tried in order"),
            ));
        }
        let wildcard = target.ends_with("/*");
        let sets = self.sets().await?;
        for u in upstreams {
            check_source(&u.source, wildcard)?;
            if let Some(set) = &u.credential_set {
                if !sets.iter().any(|s| &s.name == set) {
                    return Err(invalid(
                        "credentialSet",
                        format!("no credential set '{set}' exists (berth credential-set create)"),
                    ));
                }
            }
        }
        Ok(())
    }

    pub async fn create_cache_rule(
        &self,
        actor: &Principal,
        r: &CreateCacheRule,
    ) -> Result<CacheRule, AuthError> {
        check_name("name", &r.name)?;
        check_target(&r.target)?;
        self.check_upstreams(&r.target, &r.upstreams).await?;
        let now = now();
        let record = RuleRecord {
            name: r.name.clone(),
            target: r.target.clone(),
            upstreams: r.upstreams.clone(),
            tag_ttl_seconds: r.tag_ttl_seconds.unwrap_or(DEFAULT_TAG_TTL),
            evict_unused_days: r.evict_unused_days.filter(|d| *d > 0),
            created_at: now,
            updated_at: now,
        };
        self.change_list(SETTING_RULES, |rules: &mut Vec<RuleRecord>| {
            if rules.iter().any(|x| x.name == record.name) {
                return Err(AuthError::Conflict(format!(
                    "cache rule '{}' already exists",
                    record.name
                )));
            }
            if let Some(other) = rules.iter().find(|x| overlaps(&x.target, &record.target)) {
                return Err(AuthError::Conflict(format!(
                    "target '{}' overlaps cache rule '{}' (target '{}'): a repository is cached by one rule at most",
                    record.target, other.name, other.target
                )));
            }
            rules.push(record.clone());
            let entry = activity(
                actor,
                "create cache rule",
                &record.name,
                None,
                serde_json::to_value(view(&record)).ok(),
            );
            Ok((view(&record), entry))
        })
        .await
    }

    pub async fn update_cache_rule(
        &self,
        actor: &Principal,
        r: &UpdateCacheRule,
    ) -> Result<CacheRule, AuthError> {
        let current = self.cache_rule(&r.name).await?;
        if let Some(upstreams) = &r.upstreams {
            self.check_upstreams(&current.target, upstreams).await?;
        }
        self.change_list(SETTING_RULES, |rules: &mut Vec<RuleRecord>| {
            let rule = rules
                .iter_mut()
                .find(|x| x.name == r.name)
                .ok_or_else(|| AuthError::NotFound(format!("cache rule '{}'", r.name)))?;
            let before = serde_json::to_value(view(rule)).ok();
            if let Some(u) = &r.upstreams {
                rule.upstreams = u.clone();
            }
            if let Some(ttl) = r.tag_ttl_seconds {
                rule.tag_ttl_seconds = ttl;
            }
            if let Some(days) = r.evict_unused_days {
                rule.evict_unused_days = (days > 0).then_some(days);
            }
            rule.updated_at = now();
            let after = view(rule);
            let entry = activity(
                actor,
                "update cache rule",
                &r.name,
                before,
                serde_json::to_value(&after).ok(),
            );
            Ok((after, entry))
        })
        .await
    }

    pub async fn delete_cache_rule(&self, actor: &Principal, name: &str) -> Result<(), AuthError> {
        self.change_list(SETTING_RULES, |rules: &mut Vec<RuleRecord>| {
            let i = rules
                .iter()
                .position(|x| x.name == name)
                .ok_or_else(|| AuthError::NotFound(format!("cache rule '{name}'")))?;
            let gone = rules.remove(i);
            let entry = activity(
                actor,
                "delete cache rule",
                name,
                serde_json::to_value(view(&gone)).ok(),
                None,
            );
            Ok(((), entry))
        })
        .await
    }

    pub async fn credential_sets(&self) -> Result<Vec<CredentialSet>, AuthError> {
        let rules = self.rules().await?;
        Ok(self
            .sets()
            .await?
            .iter()
            .map(|s| set_view(s, &rules))
            .collect())
    }

    /// The sealing key, created once (compare-and-set: every node ends up
    /// with the same one).
    async fn sealing_key(&self) -> Result<LessSafeKey, AuthError> {
        let decode = |text: &str| -> Result<LessSafeKey, AuthError> {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| AuthError::Internal(format!("the sealing key is unreadable: {e}")))?;
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| AuthError::Internal("the sealing key has the wrong length".into()))?;
            Ok(LessSafeKey::new(key))
        };
        if let Some(existing) = self.store.setting(SETTING_SEALING_KEY).await? {
            return decode(&existing);
        }
        let mut fresh = [0u8; 32];
        SystemRandom::new()
            .fill(&mut fresh)
            .map_err(|_| AuthError::Internal("no randomness for the sealing key".into()))?;
        let text = base64::engine::general_purpose::STANDARD.encode(fresh);
        let entry = Activity {
            actor: "registry".into(),
            operation: "create sealing key".into(),
            target: "credential sets".into(),
            before: None,
            after: None,
        };
        self.store
            .replace_setting(SETTING_SEALING_KEY, None, &text, &entry)
            .await?;
        // Whoever won, this is the key now.
        let stored = self
            .store
            .setting(SETTING_SEALING_KEY)
            .await?
            .ok_or_else(|| AuthError::Internal("the sealing key vanished".into()))?;
        decode(&stored)
    }

    async fn seal(&self, name: &str, secret: &str) -> Result<String, AuthError> {
        let key = self.sealing_key().await?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| AuthError::Internal("no randomness for a nonce".into()))?;
        let mut data = secret.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(name.as_bytes()),
            &mut data,
        )
        .map_err(|_| AuthError::Internal("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend(data);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// A credential set's login, unsealed: for logging in to an upstream.
    pub async fn credential_set_login(&self, name: &str) -> Result<(String, String), AuthError> {
        let set = self
            .sets()
            .await?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| AuthError::NotFound(format!("credential set '{name}'")))?;
        let key = self.sealing_key().await?;
        unseal(&key, &set)
    }

    pub async fn create_credential_set(
        &self,
        actor: &Principal,
        r: &CreateCredentialSet,
    ) -> Result<CredentialSet, AuthError> {
        check_name("name", &r.name)?;
        if r.username.is_empty() || r.password.is_empty() {
            return Err(invalid(
                "username",
                "give the upstream's user name and password",
            ));
        }
        let sealed = self.seal(&r.name, &r.password).await?;
        let now = now();
        let record = SetRecord {
            name: r.name.clone(),
            username: r.username.clone(),
            sealed,
            created_at: now,
            updated_at: now,
        };
        let rules = self.rules().await?;
        self.change_list(SETTING_SETS, |sets: &mut Vec<SetRecord>| {
            if sets.iter().any(|s| s.name == record.name) {
                return Err(AuthError::Conflict(format!(
                    "credential set '{}' already exists",
                    record.name
                )));
            }
            sets.push(record.clone());
            let entry = activity(
                actor,
                "create credential set",
                &record.name,
                None,
                Some(json!({ "username": record.username })),
            );
            Ok((set_view(&record, &rules), entry))
        })
        .await
    }

    pub async fn update_credential_set(
        &self,
        actor: &Principal,
        r: &UpdateCredentialSet,
    ) -> Result<CredentialSet, AuthError> {
        let sealed = match &r.password {
            Some(p) if p.is_empty() => return Err(invalid("password", "it is empty")),
            Some(p) => Some(self.seal(&r.name, p).await?),
            None => None,
        };
        let rules = self.rules().await?;
        self.change_list(SETTING_SETS, |sets: &mut Vec<SetRecord>| {
            let set = sets
                .iter_mut()
                .find(|s| s.name == r.name)
                .ok_or_else(|| AuthError::NotFound(format!("credential set '{}'", r.name)))?;
            let before = json!({ "username": set.username });
            if let Some(u) = r.username.as_ref().filter(|u| !u.is_empty()) {
                set.username = u.clone();
            }
            if let Some(s) = &sealed {
                set.sealed = s.clone();
            }
            set.updated_at = now();
            let mut after = json!({ "username": set.username });
            if sealed.is_some() {
                after["password"] = json!("changed");
            }
            let entry = activity(
                actor,
                "update credential set",
                &r.name,
                Some(before),
                Some(after),
            );
            Ok((set_view(set, &rules), entry))
        })
        .await
    }

    pub async fn delete_credential_set(
        &self,
        actor: &Principal,
        name: &str,
    ) -> Result<(), AuthError> {
        let users = rules_using(&self.rules().await?, name);
        if !users.is_empty() {
            return Err(AuthError::Conflict(format!(
                "credential set '{name}' is used by cache rule {}: change or delete those rules first",
                users.iter().map(|u| format!("'{u}'")).collect::<Vec<_>>().join(", ")
            )));
        }
        self.change_list(SETTING_SETS, |sets: &mut Vec<SetRecord>| {
            let i = sets
                .iter()
                .position(|s| s.name == name)
                .ok_or_else(|| AuthError::NotFound(format!("credential set '{name}'")))?;
            let gone = sets.remove(i);
            let entry = activity(
                actor,
                "delete credential set",
                name,
                Some(json!({ "username": gone.username })),
                None,
            );
            Ok(((), entry))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_overlap_as_patterns_do() {
        assert!(overlaps("hub/*", "hub/nginx"));
        assert!(overlaps("hub/nginx", "hub/*"));
        assert!(overlaps("hub/*", "hub/library/*"));
        assert!(overlaps("hub/nginx", "hub/nginx"));
        assert!(!overlaps("hub/*", "hub"));
        assert!(!overlaps("hub/*", "hubx/*"));
        assert!(!overlaps("quay/*", "hub/*"));
    }

    #[test]
    fn sources_match_their_target() {
        assert!(check_source("docker.io/library/*", true).is_ok());
        assert!(check_source("http://127.0.0.1:5001/team/app", false).is_ok());
        assert!(check_source("docker.io/library/*", false).is_err());
        assert!(check_source("docker.io/library/nginx", true).is_err());
        assert!(check_source("docker.io", false).is_err());
        assert!(check_source("bad host/x", false).is_err());
        assert!(check_target("hub/*").is_ok());
        assert!(check_target("Hub/*").is_err());
    }
}
