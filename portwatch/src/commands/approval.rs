//! `portwatch approval`: approvals through the HTTP API of a running portwatch, so
//! roles and the two-person rule are checked by the server, as for everyone else.

use std::io::Write;

use crate::cli::{ApprovalArgs, ApprovalCommand};
use crate::config::Config;
use crate::output::{json_line, ts, Table};
use crate::InputError;

fn token(args: &ApprovalArgs) -> anyhow::Result<String> {
    let token = match &args.token_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| InputError(format!("--token-file {}: {e}", path.display())))?,
        None => std::env::var("PORTWATCH_TOKEN").map_err(|_| {
            InputError(
                "no token: set PORTWATCH_TOKEN or pass --token-file (see `portwatch token create`)".into(),
            )
        })?,
    };
    Ok(token.trim().to_string())
}

/// Run one `approval` subcommand.
pub async fn run(cfg: &Config, args: &ApprovalArgs) -> anyhow::Result<()> {
    let base = args
        .api
        .clone()
        .unwrap_or_else(|| format!("http://{}", cfg.api_listen));
    let base = base.trim_end_matches('/').to_string();
    let token = token(args)?;
    let client = portwatch_trust::http_client(&[])?;
    let (method, path, body) = match &args.command {
        ApprovalCommand::List { .. } => (reqwest::Method::GET, "/api/v1/approvals".to_string(), None),
        ApprovalCommand::Request {
            target,
            ports,
            proto,
            service,
            reason,
            owner,
            expires,
        } => (
            reqwest::Method::POST,
            "/api/v1/approvals".to_string(),
            Some(serde_json::json!({
                "target": target, "ports": ports, "proto": proto, "service": service,
                "reason": reason, "owner": owner, "expires": expires,
            })),
        ),
        ApprovalCommand::Approve { id, note } => (
            reqwest::Method::POST,
            format!("/api/v1/approvals/{id}/approve"),
            Some(serde_json::json!({ "note": note })),
        ),
        ApprovalCommand::Reject { id, note } => (
            reqwest::Method::POST,
            format!("/api/v1/approvals/{id}/reject"),
            Some(serde_json::json!({ "note": note })),
        ),
    };
    let mut request = client
        .request(method, format!("{base}{path}"))
        .bearer_auth(&token);
    if let Some(body) = body {
        // Absent optional fields are left out rather than sent as null.
        let body: serde_json::Map<String, serde_json::Value> = body
            .as_object()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .collect();
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{base}: {e} (is portwatch running? --api names its address)"))?;
    let status = response.status();
    let answer: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        let why = answer["error"].as_str().unwrap_or("no reason given").to_string();
        if status.is_client_error() {
            return Err(InputError(format!("{status}: {why}")).into());
        }
        anyhow::bail!("{status}: {why}");
    }
    let mut out = std::io::stdout().lock();
    match &args.command {
        ApprovalCommand::List { json: false } => {
            let mut table = Table::new(&[
                "ID", "STATE", "TARGET", "PORTS", "SERVICE", "OWNER", "EXPIRES", "BY",
            ]);
            for a in answer.as_array().into_iter().flatten() {
                let text = |k: &str| a[k].as_str().unwrap_or("-").to_string();
                let expires = a["expires_at"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| ts(Some(t.with_timezone(&chrono::Utc))))
                    .unwrap_or_else(|| "-".into());
                let by = format!(
                    "{} / {}",
                    text("requested_by"),
                    a["decision"]["by"].as_str().unwrap_or("-")
                );
                table.row(vec![
                    text("approval_id"),
                    text("state"),
                    text("net"),
                    format!("{}/{}", text("ports"), text("proto")),
                    text("service"),
                    text("owner"),
                    expires,
                    by,
                ]);
            }
            table.write(&mut out)?;
        }
        ApprovalCommand::List { json: true } => {
            for a in answer.as_array().into_iter().flatten() {
                json_line(&mut out, a)?;
            }
        }
        _ => {
            json_line(&mut out, &answer)?;
        }
    }
    out.flush()?;
    Ok(())
}
