//! How the reconciler reaches a switch: the credential its row names in the configuration,
//! resolved into an SSH [`Target`] or an [`SnmpTarget`] (with `[switch]`'s timeouts), and how
//! `nhn switch show` describes the driver without showing a secret.

use std::time::Duration;

use crate::config::{Config, Credential};

use super::{Error, SwitchRow, switch_err};
use crate::switch::driver::DriverKind;
use crate::switch::snmp::{SnmpAuth, SnmpTarget};
use crate::switch::ssh::{Auth, Target};

/// The credential `credentials` names, or what to add to the configuration.
fn credential<'c>(
    config: &'c Config,
    driver: DriverKind,
    credentials: &str,
) -> Result<&'c Credential, String> {
    config.credentials.get(credentials).ok_or_else(|| {
        let needs = match driver {
            DriverKind::Snmp => {
                "community, or user, auth_protocol, auth_password, priv_protocol and priv_password"
            }
            DriverKind::Ssh => "user and key_file or password",
        };
        format!(
            "credential {credentials:?} is not in the configuration; add [credentials.{credentials}] with {needs}"
        )
    })
}

/// How nhn logs in to an SSH switch, from its credential and `[switch]`.
pub(super) fn target(config: &Config, name: &str, row: &SwitchRow) -> Result<Target, Error> {
    let cred = credential(config, row.driver, &row.credentials).map_err(|m| switch_err(name, m))?;
    let user = cred.user.clone().ok_or_else(|| {
        switch_err(
            name,
            format!("credential {:?} has no user", row.credentials),
        )
    })?;
    let auth = match (&cred.key_file, &cred.password) {
        (Some(k), _) => Auth::KeyFile(k.clone()),
        (None, Some(p)) => Auth::Password(p.clone()),
        (None, None) => {
            return Err(switch_err(
                name,
                format!(
                    "credential {:?} has neither key_file nor password",
                    row.credentials
                ),
            ));
        }
    };
    let sw = &config.switch;
    Ok(Target {
        switch: name.to_owned(),
        address: row.address.clone(),
        user,
        auth,
        pinned: row.host_key.clone(),
        trust_on_first_use: sw.trust_on_first_use,
        legacy_algorithms: sw.legacy_algorithms.iter().any(|s| s == name),
        connect_timeout: Duration::from_secs(sw.connect_timeout_secs.max(1)),
        command_timeout: Duration::from_secs(sw.command_timeout_secs.max(1)),
    })
}

/// How nhn talks to an SNMP switch, from its credential and `[switch]`.
pub(super) fn snmp_target(
    config: &Config,
    name: &str,
    row: &SwitchRow,
) -> Result<SnmpTarget, Error> {
    let auth = snmp_auth(config, &row.credentials).map_err(|m| switch_err(name, m))?;
    let sw = &config.switch;
    Ok(SnmpTarget {
        address: row.address.clone(),
        auth,
        timeout: Duration::from_millis(sw.snmp_timeout_ms.max(10)),
        retries: sw.snmp_retries,
        max_varbinds: sw.snmp_max_varbinds.max(1),
    })
}

/// The SNMP authentication a credential describes (secrets read from their files).
fn snmp_auth(config: &Config, credentials: &str) -> Result<SnmpAuth, String> {
    let cred = credential(config, DriverKind::Snmp, credentials)?;
    let what = format!("credential {credentials:?}");
    let secret = |inline, file, key: &str| {
        Credential::secret(inline, file, key).map_err(|e| format!("{what}: {e}"))
    };
    let community = secret(
        cred.community.as_ref(),
        cred.community_file.as_ref(),
        "community",
    )?;
    let auth_password = secret(
        cred.auth_password.as_ref(),
        cred.auth_password_file.as_ref(),
        "auth_password",
    )?;
    let priv_password = secret(
        cred.priv_password.as_ref(),
        cred.priv_password_file.as_ref(),
        "priv_password",
    )?;
    match (community, auth_password) {
        (Some(_), Some(_)) => Err(format!(
            "{what}: give a community (SNMPv2c) or SNMPv3 passwords, not both"
        )),
        (Some(community), None) => Ok(SnmpAuth::V2c { community }),
        (None, Some(auth_password)) => {
            let need = |v: Option<String>, key: &str| {
                v.ok_or_else(|| format!("{what}: SNMPv3 (authPriv) needs {key}"))
            };
            let user = need(cred.user.clone(), "user")?;
            let auth_protocol = need(cred.auth_protocol.clone(), "auth_protocol")?
                .parse()
                .map_err(|e| format!("{what}: {e}"))?;
            let priv_protocol = need(cred.priv_protocol.clone(), "priv_protocol")?
                .parse()
                .map_err(|e| format!("{what}: {e}"))?;
            let priv_password = need(priv_password, "priv_password (or priv_password_file)")?;
            Ok(SnmpAuth::V3 {
                user,
                auth_protocol,
                auth_password,
                priv_protocol,
                priv_password,
            })
        }
        (None, None) => Err(format!(
            "{what} has neither a community (SNMPv2c) nor auth_password (SNMPv3)"
        )),
    }
}

/// How nhn drives `driver` switches with `credentials`, for `nhn switch show`: `ssh`, `snmp
/// v2c`, `snmp v3 authPriv (SHA/AES, user U)` or why the credential is unusable. No secret.
pub fn describe_driver(config: &Config, driver: DriverKind, credentials: &str) -> String {
    match driver {
        DriverKind::Ssh => driver.to_string(),
        DriverKind::Snmp => match snmp_auth(config, credentials) {
            Ok(auth) => format!("snmp {}", auth.describe()),
            Err(e) => format!("snmp (unusable: {e})"),
        },
    }
}
