//! The page shell every page shares (landmarks, the navigation, the
//! signed-in identity and sign-out), and small pieces pages repeat.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::contract::Refusal;

/// Where a page sits in the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    None,
    Overview,
    Repositories,
    Network,
    Access,
    Logs,
    Explain,
    Settings,
}

const NAV: &[(Section, &str, &str)] = &[
    (Section::Overview, "/", "Overview"),
    (Section::Repositories, "/repositories", "Repositories"),
    (Section::Access, "/access", "Identities & roles"),
    (Section::Network, "/network", "Network"),
    (Section::Logs, "/logs", "Logs"),
    (Section::Explain, "/explain", "Explain"),
    (Section::Settings, "/settings", "Settings"),
];

/// Who a page is shown to: their name, and the CSRF token of the session
/// (for the sign-out form).
pub struct Shell<'a> {
    pub who: &'a str,
    pub csrf: &'a str,
}

/// A whole HTML page. Without a shell (the sign-in page), no navigation.
pub fn page(shell: Option<Shell<'_>>, section: Section, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · berth" }
                link rel="stylesheet" href=(crate::assets::CSS_PATH);
                script src=(crate::assets::JS_PATH) defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    a class="brand" href="/" { "berth" }
                    @if let Some(v) = shell {
                        nav aria-label="Main" {
                            ul {
                                @for (s, href, label) in NAV {
                                    li {
                                        @if *s == section {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        div class="who" {
                            span { "Signed in as " strong { (v.who) } }
                            form method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(v.csrf);
                                button type="submit" class="link" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
                footer { "berth " (env!("CARGO_PKG_VERSION")) }
            }
        }
    }
}

/// What a refused call shows.
pub fn refusal(refusal: &Refusal) -> Markup {
    html! {
        div class="notice error" role="alert" {
            p { strong { (refusal.status.as_u16()) " " (refusal.code) } }
            p class="message" { (refusal.message) }
        }
        p { a href="/" { "Back to the overview" } }
    }
}

/// A notice after a change.
pub fn notice(text: &str) -> Markup {
    html! { div class="notice ok" role="status" { (text) } }
}

/// The hidden CSRF field of a form.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// Bytes as people read them (1.5 MiB).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `sha256:0123456789ab…`, the whole digest in the title.
pub fn short_digest(digest: &str) -> Markup {
    let short: String = digest.chars().take(19).collect();
    html! { code title=(digest) { (short) "…" } }
}

/// A URL with a query string.
pub fn href(path: &str, query: &[(&str, &str)]) -> String {
    let query: Vec<(&str, &str)> = query
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .copied()
        .collect();
    if query.is_empty() {
        return path.to_string();
    }
    format!(
        "{path}?{}",
        serde_urlencoded::to_string(&query).unwrap_or_default()
    )
}

/// A read-only text field with a button that copies it (the button only
/// appears with JavaScript on; the text can always be selected).
pub fn copyable(label: &str, value: &str) -> Markup {
    html! {
        div class="copy" {
            label { (label) " " input type="text" readonly value=(value) class="mono"; }
            button type="button" class="copy-button" hidden data-copy=(value) { "Copy" }
        }
    }
}

/// Marks text as already escaped (for the inline SVG charts).
pub fn raw(s: String) -> PreEscaped<String> {
    PreEscaped(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn empty_query_values_are_left_out() {
        assert_eq!(
            href("/logs", &[("kind", "login"), ("identity", "")]),
            "/logs?kind=login"
        );
        assert_eq!(href("/x", &[("a", "b c&d")]), "/x?a=b+c%26d");
    }
}
