//! Network access: public access, the default action, IP and subnet
//! rules, the trusted-services bypass, private and data endpoints. A
//! change that would lock the signed-in browser's own address out is
//! refused by the API (as `berth network` refuses it) and shown here with
//! the choice to make it anyway.

use axum::extract::Query;
use axum::response::Response;
use berth_manage::network::{
    AddNetworkRule, Bypass, DefaultAction, GetNetwork, NetworkSettings, PublicNetworkAccess,
    RemoveNetworkRule, UpdateNetwork,
};
use berth_manage::registry::{Endpoints, GetEndpoints};
use berth_manage::Access;
use http::StatusCode;
use maud::{html, Markup};
use serde::Deserialize;

use crate::context::{Change, Viewer};
use crate::contract::Refusal;
use crate::layout::{self, Section};

#[derive(Debug, Default, Deserialize)]
pub struct Notice {
    #[serde(default)]
    done: String,
}

fn notice_text(key: &str) -> Option<&'static str> {
    Some(match key {
        "added" => "The rule was added.",
        "removed" => "The rule was removed.",
        "updated" => "The network settings were changed.",
        _ => return None,
    })
}

pub async fn page(viewer: Viewer, Query(notice): Query<Notice>) -> Response {
    let settings = match viewer.call(&GetNetwork {}).await {
        Ok(s) => s,
        Err(r) => return viewer.refusal(Section::Network, &r),
    };
    let endpoints = match viewer.call(&GetEndpoints {}).await {
        Ok(e) => e,
        Err(r) => return viewer.refusal(Section::Network, &r),
    };
    let body = html! {
        @if let Some(t) = notice_text(&notice.done) { (layout::notice(t)) }
        (settings_view(&viewer, &settings))
        (endpoints_view(&endpoints))
    };
    viewer.page(Section::Network, "Network", body)
}

fn settings_view(viewer: &Viewer, s: &NetworkSettings) -> Markup {
    let writer = viewer.can(Access::ManageWrite);
    let public = s.public_network_access == PublicNetworkAccess::Enabled;
    let deny = s.network_rule_set.default_action == DefaultAction::Deny;
    html! {
        dl class="facts" id="network-summary" {
            dt { "Public access" } dd { (if public { "Enabled" } else { "Disabled: only private endpoints answer" }) }
            dt { "Default action" } dd { (if deny { "Deny: only the addresses below may connect" } else { "Allow: every address may connect (the rules are not used)" }) }
            dt { "Trusted services" } dd { (if s.network_rule_bypass_options == Bypass::TrustedServices { "pass the rules" } else { "do not pass the rules" }) }
            dt { "Data endpoints" } dd { (if s.data_endpoint_enabled { "on" } else { "off" }) }
        }
        p class="muted" {
            "An identity marked as a trusted service (a CI system, a scanner) is let in whatever "
            "the rules say when trusted services pass them. Your own address as berth sees it: "
            code { (address(viewer)) } "."
        }
        h2 { "IP rules" }
        @if s.network_rule_set.ip_rules.is_empty() {
            p class="muted" id="no-ip-rules" { "No IP rules." }
        } @else {
            ul id="ip-rules" {
                @for rule in &s.network_rule_set.ip_rules {
                    li {
                        code { (rule) }
                        @if writer {
                            " "
                            form method="post" action="/network/rules/remove" class="inline" {
                                (viewer.csrf_field())
                                input type="hidden" name="ip" value=(rule);
                                button type="submit" class="secondary" aria-label=(format!("Remove the rule {rule}")) { "Remove" }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Subnet rules" }
        @if s.network_rule_set.subnet_rules.is_empty() {
            p class="muted" { "No subnet rules." }
        } @else {
            ul { @for rule in &s.network_rule_set.subnet_rules { li { code { (rule) } } } }
        }
        @if !s.declared_subnets.is_empty() {
            p class="muted" {
                "Subnets the configuration declares: "
                @for (i, subnet) in s.declared_subnets.iter().enumerate() {
                    @if i > 0 { ", " }
                    code { (subnet.name) } " ("
                    (subnet.cidrs.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")) ")"
                }
            }
        }
        @if writer {
            h2 { "Add a rule" }
            form method="post" action="/network/rules/add" class="row" {
                (viewer.csrf_field())
                label for="add-ip" { "Address or CIDR range" }
                input type="text" id="add-ip" name="ip" placeholder="10.0.0.0/8";
                label for="add-subnet" { "or a declared subnet" }
                input type="text" id="add-subnet" name="subnet";
                button type="submit" { "Add rule" }
            }
            h2 { "Change the settings" }
            form method="post" action="/network/settings" class="row" {
                (viewer.csrf_field())
                label for="public" { "Public access"
                    select id="public" name="public" {
                        option value="Enabled" selected[public] { "Enabled" }
                        option value="Disabled" selected[!public] { "Disabled" }
                    }
                }
                label for="default-action" { "Default action"
                    select id="default-action" name="default_action" {
                        option value="Allow" selected[!deny] { "Allow" }
                        option value="Deny" selected[deny] { "Deny" }
                    }
                }
                button type="submit" { "Save" }
            }
        } @else {
            p class="muted" id="read-only" { "You can read these settings; changing them needs the Contributor role (registries/manage/write)." }
        }
    }
}

fn address(viewer: &Viewer) -> String {
    viewer.client_address().to_string()
}

fn endpoints_view(e: &Endpoints) -> Markup {
    html! {
        h2 { "Endpoints" }
        div class="table-wrap" {
            table id="endpoints" {
                thead { tr { th scope="col" { "Endpoint" } th scope="col" { "Address" } } }
                tbody {
                    @for l in &e.endpoints { tr { td { (l.endpoint) } td { code { (l.address) } } } }
                }
            }
        }
        p class="muted" {
            "A private endpoint is a listener of its own (an address inside a private network); "
            "the network rules apply to the public endpoint only."
        }
        h2 { "Data endpoints" }
        @if e.data_endpoints.is_empty() {
            p class="muted" { "None: blobs are served by the endpoint that was asked." }
        } @else {
            ul { @for d in &e.data_endpoints { li { (d.region) ": " code { (d.host) } } } }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RuleForm {
    #[serde(default)]
    ip: String,
    #[serde(default)]
    subnet: String,
    #[serde(default)]
    force: String,
}

fn given(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

pub async fn add_rule(Change(viewer, form): Change<RuleForm>) -> Response {
    let request = AddNetworkRule {
        ip_address: given(&form.ip),
        subnet: given(&form.subnet),
    };
    match viewer.call(&request).await {
        Ok(_) => viewer.redirect("/network?done=added"),
        Err(r) => viewer.refusal(Section::Network, &r),
    }
}

pub async fn remove_rule(Change(viewer, form): Change<RuleForm>) -> Response {
    let request = RemoveNetworkRule {
        ip_address: given(&form.ip),
        subnet: given(&form.subnet),
        force: (form.force == "on").then_some(true),
    };
    match viewer.call(&request).await {
        Ok(_) => viewer.redirect("/network?done=removed"),
        Err(r) => lockout_or_refusal(
            &viewer,
            r,
            "/network/rules/remove",
            &form.ip,
            &form.subnet,
            None,
        ),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    public: String,
    #[serde(default)]
    default_action: String,
    #[serde(default)]
    force: String,
}

pub async fn update(Change(viewer, form): Change<SettingsForm>) -> Response {
    let public = match form.public.as_str() {
        "Enabled" => Some(PublicNetworkAccess::Enabled),
        "Disabled" => Some(PublicNetworkAccess::Disabled),
        _ => None,
    };
    let default_action = match form.default_action.as_str() {
        "Allow" => Some(DefaultAction::Allow),
        "Deny" => Some(DefaultAction::Deny),
        _ => None,
    };
    let request = UpdateNetwork {
        public_network_access: public,
        default_action,
        force: (form.force == "on").then_some(true),
        ..Default::default()
    };
    match viewer.call(&request).await {
        Ok(_) => viewer.redirect("/network?done=updated"),
        Err(r) => lockout_or_refusal(&viewer, r, "/network/settings", "", "", Some(&form)),
    }
}

/// A lock-out (409) is shown with the API's warning and a form that makes
/// the same change with `force`; any other refusal as it is.
fn lockout_or_refusal(
    viewer: &Viewer,
    refusal: Refusal,
    action: &str,
    ip: &str,
    subnet: &str,
    settings: Option<&SettingsForm>,
) -> Response {
    if refusal.status != StatusCode::CONFLICT {
        return viewer.refusal(Section::Network, &refusal);
    }
    let body = html! {
        div class="notice warn" role="alert" id="lockout" {
            p { strong { "This change would lock you out." } }
            p class="message" { (refusal.message) }
        }
        form method="post" action=(action) class="row" {
            (viewer.csrf_field())
            input type="hidden" name="ip" value=(ip);
            input type="hidden" name="subnet" value=(subnet);
            @if let Some(s) = settings {
                input type="hidden" name="public" value=(s.public);
                input type="hidden" name="default_action" value=(s.default_action);
            }
            label class="check" { input type="checkbox" name="force" required; "I understand: make the change anyway" }
            button type="submit" class="danger" { "Make the change" }
        }
        p { a href="/network" { "Cancel" } }
    };
    viewer.page_with_status(StatusCode::CONFLICT, Section::Network, "Network", body)
}
