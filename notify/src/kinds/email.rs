//! Email over SMTP (lettre): plain SMTP, STARTTLS (`smtp://host:587?tls=required`) or
//! implicit TLS (`smtps://host:465`), with optional authentication; each message has
//! a plain-text and an HTML part.

use std::time::Duration;

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use portwatch_projections::Notification;

use super::{Context, Deliver, Kind, Outcome, Spec, SpecError};
use crate::format;

/// `kind = "email"`.
#[derive(Debug, Clone, Copy)]
pub struct Email;

impl Kind for Email {
    fn name(&self) -> &'static str {
        "email"
    }

    fn build(&self, spec: &Spec<'_>) -> Result<std::sync::Arc<dyn Deliver>, SpecError> {
        let url = spec.url_with(
            &["smtp", "smtps"],
            "smtp://host[:port][?tls=required] or smtps://host[:port]",
        )?;
        let from = spec
            .from
            .ok_or_else(|| SpecError::new("from", "(missing)", "an email channel needs a sender"))?;
        check_address(from).map_err(|e| SpecError::new("from", format!("{from:?}"), e))?;
        if spec.to.is_empty() {
            return Err(SpecError::new("to", "[]", "an email channel needs at least one recipient"));
        }
        for t in spec.to {
            check_address(t).map_err(|e| SpecError::new("to", format!("{t:?}"), e))?;
        }
        if spec.username.is_some() != spec.secret.is_some() {
            return Err(SpecError::new(
                "username",
                format!("{:?}", spec.username.unwrap_or_default()),
                "SMTP AUTH needs both username and secret (the password)",
            ));
        }
        // AUTH over a connection that may stay plain would send the password in the
        // clear (opportunistic STARTTLS can be stripped on the way).
        let starttls = url.query_pairs().any(|(k, v)| k == "tls" && v == "required");
        if spec.username.is_some() && url.scheme() == "smtp" && !starttls {
            return Err(SpecError::new(
                "url",
                spec.shown_url(),
                "SMTP AUTH over plain smtp:// would send the password in the clear: use smtps:// or smtp://HOST:587?tls=required (STARTTLS)",
            ));
        }
        Ok(std::sync::Arc::new(EmailChannel {
            url: spec.written.to_string(),
            username: spec.username.map(str::to_string),
            password: spec.secret.map(str::to_string),
            from: from.to_string(),
            to: spec.to.to_vec(),
        }))
    }
}

impl Deliver for EmailChannel {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn target(&self) -> String {
        format!("{} -> {}", portwatch_events::redact::url(&self.url), self.to.join(", "))
    }

    fn send<'a>(&'a self, n: &'a Notification, cx: Context<'a>) -> futures::future::BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match send(self, n, cx.timeout, cx.ca_pem).await {
                Ok(code) => Outcome::delivered(Some(code)),
                Err((code, e)) => Outcome::failed(code, e),
            }
        })
    }
}

/// An SMTP destination.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailChannel {
    /// `smtp://host[:port][?tls=required|opportunistic]` or `smtps://host[:port]`.
    pub url: String,
    /// User name for SMTP AUTH, if the server wants one.
    pub username: Option<String>,
    /// Its password.
    pub password: Option<String>,
    /// The sender.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
}

impl std::fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never reaches a log.
        f.debug_struct("EmailChannel")
            .field("url", &portwatch_events::redact::url(&self.url))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("to", &self.to)
            .finish()
    }
}

/// Whether `address` is a mailbox email can be sent from or to
/// (`soc@example.com`, `SOC <soc@example.com>`).
pub fn check_address(address: &str) -> Result<(), String> {
    address.parse::<Mailbox>().map(|_| ()).map_err(|e| e.to_string())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The HTML part: the title and one list item per alert.
pub fn html(n: &Notification) -> String {
    let items: String = format::lines(n)
        .iter()
        .map(|l| format!("<li>{}</li>", escape(l)))
        .collect();
    format!(
        "<!doctype html><html><body><h3>{}</h3><ul>{items}</ul><p><small>notification {}</small></p></body></html>",
        escape(&format::title(n)),
        escape(&n.id)
    )
}

/// `X-Portwatch-Delivery`: the notification's id, the same on every attempt (as on
/// the HTTP kinds).
#[derive(Debug, Clone)]
struct Delivery(String);

impl Header for Delivery {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str(super::http::DELIVERY_HEADER)
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// The message for `n`.
pub fn message(channel: &EmailChannel, n: &Notification) -> Result<Message, String> {
    let from: Mailbox = channel
        .from
        .parse()
        .map_err(|e| format!("from {:?}: {e}", channel.from))?;
    let mut builder = Message::builder()
        .from(from)
        .subject(format::title(n))
        .header(Delivery(n.id.clone()))
        // Mail systems that dedupe by Message-ID see a redelivery as what it is.
        .message_id(Some(format!(
            "<{}@portwatch>",
            n.id.replace([' ', '<', '>'], "_")
        )));
    for to in &channel.to {
        let mailbox: Mailbox = to.parse().map_err(|e| format!("to {to:?}: {e}"))?;
        builder = builder.to(mailbox);
    }
    builder
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(format::text(n)),
                )
                .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html(n))),
        )
        .map_err(|e| e.to_string())
}

/// TLS as `url` asks for it, trusting the system's roots and the certificates of
/// `ca_pem` (a private CA): `None` for plain `smtp://` without `tls=`.
fn tls(url: &str, ca_pem: &[u8]) -> Result<Option<Tls>, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("url: {e}"))?;
    let host = parsed.host_str().ok_or("url: no host")?.to_string();
    let mut params = TlsParameters::builder(host);
    for cert in portwatch_trust::parse_pem(ca_pem).map_err(|e| e.to_string())? {
        params =
            params.add_root_certificate(Certificate::from_der(cert.to_vec()).map_err(|e| e.to_string())?);
    }
    let params = params.build().map_err(|e| format!("TLS set-up: {e}"))?;
    let mode = parsed
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.to_string());
    Ok(match (parsed.scheme(), mode.as_deref()) {
        ("smtps", _) => Some(Tls::Wrapper(params)),
        (_, Some("required")) => Some(Tls::Required(params)),
        (_, Some("opportunistic")) => Some(Tls::Opportunistic(params)),
        _ => None,
    })
}

/// Send `n`; the SMTP reply code on success.
pub async fn send(
    channel: &EmailChannel,
    n: &Notification,
    timeout: Duration,
    ca_pem: Option<&[u8]>,
) -> Result<u16, (Option<u16>, String)> {
    let message = message(channel, n).map_err(|e| (None, e))?;
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&channel.url)
        .map_err(|e| (None, format!("url: {e}")))?
        .timeout(Some(timeout));
    if let Some(pem) = ca_pem {
        if let Some(tls) = tls(&channel.url, pem).map_err(|e| (None, e))? {
            builder = builder.tls(tls);
        }
    }
    if let (Some(user), Some(password)) = (&channel.username, &channel.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    let transport = builder.build();
    match transport.send(message).await {
        Ok(response) => Ok(u16::from(response.code())),
        Err(e) => Err((e.status().map(u16::from), e.to_string())),
    }
}
