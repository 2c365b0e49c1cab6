//! Redfish (DMTF's HTTP+JSON BMC API): the power of one `ComputerSystem`.
//!
//! The system is the configured `redfish_system` or the first member of
//! `/redfish/v1/Systems`, resolved once (a name the BMC redirects to its id works too).
//! Power changes are `POST .../Actions/ComputerSystem.Reset` (On, ForceOff,
//! GracefulShutdown, ForceRestart), the next boot is a `PATCH` of `Boot`, and the state is
//! the system's `PowerState`. HTTP Basic authentication.
//!
//! TLS verifies the BMC's certificate against the credential's `ca_file` only (or the
//! system's roots without one); `insecure = true` turns verification off and is logged as a
//! warning every time a driver is built. `http://` addresses work, for emulators and
//! isolated management networks.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Bmc, Command, Error, Login, PowerState};
use crate::config::{Credential, Power};
use crate::facility::BoxFuture;

const SYSTEMS: &str = "/redfish/v1/Systems";

/// A BMC reached over Redfish.
pub struct Redfish {
    machine: String,
    /// `https://host[:port]`, no trailing slash.
    base: String,
    login: Login,
    /// The configured system id, if any.
    system: Option<String>,
    client: reqwest::Client,
    /// The system's path once found, e.g. `/redfish/v1/Systems/1`.
    path: tokio::sync::OnceCell<String>,
}

impl Redfish {
    pub fn new(
        machine: &str,
        bmc_address: &str,
        login: Login,
        cred: &Credential,
        power: &Power,
    ) -> Result<Redfish, Error> {
        let config_err = |problem: String| Error::Config {
            machine: machine.to_owned(),
            problem,
        };
        let base = base_url(bmc_address)
            .map_err(|p| config_err(format!("bmc_address {bmc_address:?}: {p}")))?;
        if login.user.is_none() {
            return Err(config_err(format!(
                "credential {:?} has no user; Redfish needs one in [credentials.{}]",
                login.credential, login.credential
            )));
        }
        if let Some(id) = &cred.redfish_system
            && (id.is_empty() || id.contains(['/', '?', '#']))
        {
            return Err(config_err(format!(
                "redfish_system {id:?} in [credentials.{}] is not a system id",
                login.credential
            )));
        }
        let timeout = Duration::from_secs(power.command_timeout_secs.max(1));
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::limited(3))
            .no_proxy()
            .user_agent(concat!("nhn/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &cred.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                config_err(format!(
                    "cannot read ca_file {} of [credentials.{}]: {e}",
                    ca.display(),
                    login.credential
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    config_err(format!(
                        "ca_file {} of [credentials.{}] holds no PEM certificate",
                        ca.display(),
                        login.credential
                    ))
                })?;
            builder = builder.tls_certs_only(certs);
        }
        if cred.insecure {
            tracing::warn!(machine, bmc = %base,
                "TLS certificate verification is OFF for this BMC (insecure = true in [credentials.{}]): \
                 anyone on the path can impersonate it and read its password", login.credential);
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        if base.starts_with("http://") {
            tracing::warn!(machine, bmc = %base,
                "plain HTTP to this BMC: its password crosses the network unencrypted");
        }
        let client = builder
            .build()
            .map_err(|e| config_err(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Redfish {
            machine: machine.to_owned(),
            base,
            login,
            system: cred.redfish_system.clone(),
            client,
            path: tokio::sync::OnceCell::new(),
        })
    }

    /// One request with Basic auth; the JSON body of a 2xx answer (`Null` if empty), else the
    /// error its status means. `not_found` is the error for a 404.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        operation: &str,
        not_found: impl FnOnce(String) -> Error,
    ) -> Result<(Value, String), Error> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .client
            .request(method, &url)
            .basic_auth(
                self.login.user.as_deref().unwrap_or_default(),
                Some(&self.login.password),
            )
            .header("Accept", "application/json");
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        let final_path = resp.url().path().trim_end_matches('/').to_owned();
        let text = resp.text().await.map_err(|e| self.transport_error(&e))?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok((Value::Null, final_path));
            }
            let value = serde_json::from_str(&text).map_err(|e| Error::Protocol {
                machine: self.machine.clone(),
                bmc: self.base.clone(),
                operation: operation.to_owned(),
                detail: format!("{url}: not JSON ({e})"),
            })?;
            return Ok((value, final_path));
        }
        let detail = format!("{url}: HTTP {status}{}", redfish_message(&text));
        let (machine, bmc, operation) = (
            self.machine.clone(),
            self.base.clone(),
            operation.to_owned(),
        );
        Err(match classify_status(status) {
            StatusClass::AuthRefused => Error::AuthRefused {
                machine,
                bmc,
                credential: self.login.credential.clone(),
                detail,
                hint: String::new(),
            },
            StatusClass::NotFound => not_found(detail),
            StatusClass::Busy => Error::Busy {
                machine,
                bmc,
                operation,
                detail,
            },
            StatusClass::Refused => Error::Refused {
                machine,
                bmc,
                operation,
                detail,
            },
        })
    }

    fn transport_error(&self, e: &reqwest::Error) -> Error {
        let (machine, bmc) = (self.machine.clone(), self.base.clone());
        if let Some(tls) = tls_cause(e) {
            return Error::Tls {
                machine,
                bmc,
                credential: self.login.credential.clone(),
                detail: tls,
            };
        }
        let detail = if e.is_timeout() {
            "no answer in time".to_owned()
        } else {
            chain(e)
        };
        Error::Unreachable {
            machine,
            bmc,
            detail,
        }
    }

    fn unknown_system(&self, system: &str, detail: String) -> Error {
        Error::UnknownSystem {
            machine: self.machine.clone(),
            bmc: self.base.clone(),
            system: system.to_owned(),
            credential: self.login.credential.clone(),
            detail,
        }
    }

    fn refused(&self, operation: &str, detail: String) -> Error {
        Error::Refused {
            machine: self.machine.clone(),
            bmc: self.base.clone(),
            operation: operation.to_owned(),
            detail,
        }
    }

    /// The system's path, found once: the configured id (following the BMC's redirect from a
    /// name to an id), or the first member of the Systems collection.
    async fn system_path(&self) -> Result<&str, Error> {
        self.path
            .get_or_try_init(|| async {
                match &self.system {
                    Some(id) => {
                        let path = format!("{SYSTEMS}/{id}");
                        let (_, final_path) = self
                            .request(Method::GET, &path, None, "finding the system", |d| {
                                self.unknown_system(id, d)
                            })
                            .await?;
                        Ok(final_path)
                    }
                    None => {
                        let (list, _) = self
                            .request(Method::GET, SYSTEMS, None, "listing systems", |d| {
                                self.refused("listing systems", d)
                            })
                            .await?;
                        first_member(&list).ok_or_else(|| {
                            self.unknown_system(
                                "(the first)",
                                format!("{SYSTEMS} lists no members"),
                            )
                        })
                    }
                }
            })
            .await
            .map(String::as_str)
    }

    async fn get_system(&self, operation: &str) -> Result<Value, Error> {
        let path = self.system_path().await?;
        let id = path.rsplit('/').next().unwrap_or(path);
        let (system, _) = self
            .request(Method::GET, path, None, operation, |d| {
                self.unknown_system(id, d)
            })
            .await?;
        Ok(system)
    }
}

impl Bmc for Redfish {
    fn address(&self) -> &str {
        &self.base
    }

    fn power_state(&self) -> BoxFuture<'_, Result<PowerState, Error>> {
        Box::pin(async move {
            let system = self.get_system("power status").await?;
            let state = system.get("PowerState").and_then(Value::as_str);
            state
                .and_then(parse_power_state)
                .ok_or_else(|| Error::Protocol {
                    machine: self.machine.clone(),
                    bmc: self.base.clone(),
                    operation: "power status".into(),
                    detail: format!("PowerState is {:?}", system.get("PowerState")),
                })
        })
    }

    fn send(&self, command: Command) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let operation = command.to_string();
            let path = self.system_path().await?;
            let action = format!("{path}/Actions/ComputerSystem.Reset");
            let body = json!({ "ResetType": reset_type(command) });
            self.request(Method::POST, &action, Some(body), &operation, |d| {
                self.refused(&operation, d)
            })
            .await?;
            Ok(())
        })
    }

    fn boot_once_pxe(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let path = self.system_path().await?;
            let body = json!({
                "Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}
            });
            self.request(Method::PATCH, path, Some(body), "boot override", |d| {
                self.refused("boot override", d)
            })
            .await?;
            Ok(())
        })
    }
}

/// The base URL for `bmc_address`: `http(s)://host[:port]` as given, or `https://` + address.
pub fn base_url(addr: &str) -> Result<String, String> {
    let addr = addr.trim();
    let url = if addr.contains("://") {
        addr.trim_end_matches('/').to_owned()
    } else {
        format!("https://{}", addr.trim_end_matches('/'))
    };
    let parsed =
        reqwest::Url::parse(&url).map_err(|e| format!("not a URL or host[:port] ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "scheme {:?}: use https:// or http://",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    if !(parsed.path().is_empty() || parsed.path() == "/") || parsed.query().is_some() {
        return Err("give the BMC's address only, without a path".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("put the user and password in the credential, not in the address".into());
    }
    Ok(url)
}

/// The Redfish ResetType of a command.
pub fn reset_type(command: Command) -> &'static str {
    match command {
        Command::On => "On",
        Command::ForceOff => "ForceOff",
        Command::GracefulShutdown => "GracefulShutdown",
        Command::ForceRestart => "ForceRestart",
    }
}

/// `PowerState`: only "Off" is off; a system powering off still draws power.
pub fn parse_power_state(s: &str) -> Option<PowerState> {
    match s {
        "On" | "PoweringOn" | "PoweringOff" | "Paused" => Some(PowerState::On),
        "Off" => Some(PowerState::Off),
        _ => None,
    }
}

/// What an HTTP status means for a power driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    AuthRefused,
    NotFound,
    /// 409 (another operation in progress, as on power-on right after power-off), 429 and
    /// 5xx except 501: retryable.
    Busy,
    /// Any other 4xx, 501 and what is left: fatal.
    Refused,
}

pub fn classify_status(status: StatusCode) -> StatusClass {
    match status.as_u16() {
        401 | 403 => StatusClass::AuthRefused,
        404 => StatusClass::NotFound,
        409 | 429 | 500 | 502..=599 => StatusClass::Busy,
        _ => StatusClass::Refused,
    }
}

/// The `@odata.id` of the first member of a collection.
fn first_member(collection: &Value) -> Option<String> {
    let id = collection
        .get("Members")?
        .as_array()?
        .first()?
        .get("@odata.id")?
        .as_str()?;
    Some(id.trim_end_matches('/').to_owned()).filter(|p| p.starts_with("/redfish/"))
}

/// ": <message>" from a Redfish error body (`error.message` or its first extended info), or
/// the start of a non-JSON body; "" if there is nothing to say.
fn redfish_message(body: &str) -> String {
    let json: Option<Value> = serde_json::from_str(body).ok();
    let error = json.as_ref().and_then(|v| v.get("error"));
    let extended = error
        .and_then(|e| e.get("@Message.ExtendedInfo"))
        .and_then(|i| i.get(0))
        .and_then(|i| i.get("Message"))
        .and_then(Value::as_str);
    let message = extended
        .or_else(|| error.and_then(|e| e.get("message")).and_then(Value::as_str))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            if json.is_some() {
                String::new()
            } else {
                body.split_whitespace().collect::<Vec<_>>().join(" ")
            }
        });
    let message: String = message.chars().take(200).collect();
    if message.is_empty() {
        message
    } else {
        format!(": {message}")
    }
}

/// The error and its causes in one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    parts.join(": ")
}

/// The TLS failure behind a request error (a certificate nhn does not trust, a handshake
/// the BMC refused), if that is what it was. The connector nests it in `io::Error`s, whose
/// `source()` skips the wrapped error, so those are unwrapped with `get_ref()`.
fn tls_cause(e: &reqwest::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(tls) = c.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        cause = match c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bmc_address_becomes_an_https_base_url_unless_a_scheme_is_given() {
        let ok = |a: &str| base_url(a).unwrap();
        assert_eq!(ok("10.0.0.5"), "https://10.0.0.5");
        assert_eq!(ok("bmc.example:8443"), "https://bmc.example:8443");
        assert_eq!(ok("http://10.0.0.5:8000/"), "http://10.0.0.5:8000");
        assert_eq!(ok("https://[fd00::5]:8443"), "https://[fd00::5]:8443");
        for bad in [
            "ftp://10.0.0.5",
            "https://10.0.0.5/redfish/v1",
            "https://admin:pw@10.0.0.5",
            "https://",
        ] {
            assert!(base_url(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn only_off_is_off() {
        assert_eq!(parse_power_state("On"), Some(PowerState::On));
        assert_eq!(parse_power_state("Off"), Some(PowerState::Off));
        assert_eq!(parse_power_state("PoweringOff"), Some(PowerState::On));
        assert_eq!(parse_power_state("PoweringOn"), Some(PowerState::On));
        assert_eq!(parse_power_state("off"), None);
        assert_eq!(parse_power_state(""), None);
    }

    #[test]
    fn http_statuses_are_retryable_only_when_the_bmc_may_recover() {
        let class = |s: u16| classify_status(StatusCode::from_u16(s).unwrap());
        assert_eq!(class(401), StatusClass::AuthRefused);
        assert_eq!(class(403), StatusClass::AuthRefused);
        assert_eq!(class(404), StatusClass::NotFound);
        for busy in [409, 429, 500, 502, 503, 504] {
            assert_eq!(class(busy), StatusClass::Busy, "{busy}");
        }
        for refused in [400, 405, 412, 501] {
            assert_eq!(class(refused), StatusClass::Refused, "{refused}");
        }
    }

    #[test]
    fn reset_types_are_the_redfish_names() {
        assert_eq!(reset_type(Command::On), "On");
        assert_eq!(reset_type(Command::ForceOff), "ForceOff");
        assert_eq!(reset_type(Command::GracefulShutdown), "GracefulShutdown");
        assert_eq!(reset_type(Command::ForceRestart), "ForceRestart");
    }

    #[test]
    fn the_first_member_is_the_default_system() {
        let list = json!({"Members": [{"@odata.id": "/redfish/v1/Systems/1/"}, {"@odata.id": "/redfish/v1/Systems/2"}]});
        assert_eq!(
            first_member(&list).as_deref(),
            Some("/redfish/v1/Systems/1")
        );
        assert_eq!(first_member(&json!({"Members": []})), None);
        assert_eq!(
            first_member(&json!({"Members": [{"@odata.id": "http://evil/x"}]})),
            None
        );
    }

    #[test]
    fn error_bodies_give_their_redfish_message() {
        let extended = r#"{"error": {"code": "Base.1.0.GeneralError", "message": "general",
            "@Message.ExtendedInfo": [{"Message": "The power is being changed"}]}}"#;
        assert_eq!(redfish_message(extended), ": The power is being changed");
        assert_eq!(
            redfish_message(r#"{"error": {"message": "Busy"}}"#),
            ": Busy"
        );
        assert_eq!(
            redfish_message("<html>\n Not  Found </html>"),
            ": <html> Not Found </html>"
        );
        assert_eq!(redfish_message(""), "");
        assert_eq!(redfish_message("{}"), "");
    }
}
