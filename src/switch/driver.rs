//! The switch driver trait: what the reconciler needs from a switch, whatever the protocol.
//! A driver is one session with one switch for one batch (an SSH driver's connection may come
//! from and go back to the [`super::ssh::Pool`]):
//!
//! - [`SshDriver`]: a CLI over SSH ([`super::ssh`]) with the switch OS's templates
//!   ([`super::templates`]) and read-back parser ([`super::readback`]).
//! - [`SnmpDriver`]: the Q-BRIDGE-MIB over SNMPv2c/v3 ([`super::snmp`]).
//!
//! The reconciler owns intents, ordering (make before break across switches), persistence
//! and verification; a driver only reads the switch and applies one batch. [`DriverKind`]
//! says which of the two a switch is driven by.

use std::future::Future;

use super::readback::{self, SwitchState};
use super::snmp::{SnmpDriver, SnmpError};
use super::ssh::{Session, SshError};
use super::templates::{PortChange, TemplateError, TemplateSet, merge_lines, render_batch};

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    Snmp(#[from] SnmpError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Parse(#[from] readback::ParseError),
}

pub use crate::model::DriverKind;

/// One session with one switch.
pub trait SwitchDriver: Send {
    /// The switch's VLAN configuration; `None` if this switch cannot be read back (an SSH
    /// template set without a parser), in which case the reconciler trusts its own records.
    fn read_back(
        &mut self,
    ) -> impl Future<Output = Result<Option<SwitchState>, DriverError>> + Send;

    /// Applies `changes` to a switch last seen in `state`; returns the switch's state
    /// afterwards, read back where the driver can (else the state the batch should leave).
    fn apply(
        &mut self,
        state: &SwitchState,
        changes: &[PortChange],
    ) -> impl Future<Output = Result<SwitchState, DriverError>> + Send;

    /// Ends the session.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// A switch CLI over SSH, driven by its OS's template set.
pub struct SshDriver<'a> {
    session: Session,
    set: &'a TemplateSet,
    switch: String,
}

impl<'a> SshDriver<'a> {
    pub fn new(session: Session, set: &'a TemplateSet, switch: &str) -> Self {
        SshDriver {
            session,
            set,
            switch: switch.to_owned(),
        }
    }

    async fn show(&mut self) -> Result<Option<SwitchState>, DriverError> {
        let lines = self.show_lines()?;
        let out = self.session.run(&lines).await?;
        Ok(readback::parse(self.set.meta.parser, &out)?)
    }

    /// The SSH session back (for the connection pool), instead of closing it.
    pub fn into_session(self) -> Session {
        self.session
    }

    fn show_lines(&self) -> Result<Vec<String>, TemplateError> {
        let lines = self.set.render(
            "show",
            minijinja::context! { switch => self.switch.as_str() },
        )?;
        Ok(merge_lines(&self.set.meta, lines))
    }
}

impl SwitchDriver for SshDriver<'_> {
    async fn read_back(&mut self) -> Result<Option<SwitchState>, DriverError> {
        self.show().await
    }

    async fn apply(
        &mut self,
        state: &SwitchState,
        changes: &[PortChange],
    ) -> Result<SwitchState, DriverError> {
        let batch = render_batch(self.set, &self.switch, state, changes)?;
        let after = if self.set.meta.verify_in_batch {
            // The batch prints nothing on success, so its output is the read-back's; with a
            // merge prefix the read-back joins the batch's own command (Open vSwitch: one
            // ovs-vsctl transaction that changes and then lists).
            let mut lines = batch.lines.clone();
            lines.extend(self.show_lines()?);
            let out = self
                .session
                .run(&merge_lines(&self.set.meta, lines))
                .await?;
            readback::parse(self.set.meta.parser, &out)?
        } else {
            self.session.run(&batch.lines).await?;
            self.show().await?
        };
        Ok(after.unwrap_or_else(|| {
            // No parser: trust the switch's answer (no error) and record the expected state.
            let mut st = state.clone();
            st.ports.extend(batch.expected);
            st
        }))
    }

    async fn close(self) {
        self.session.close().await;
    }
}

impl SwitchDriver for SnmpDriver {
    async fn read_back(&mut self) -> Result<Option<SwitchState>, DriverError> {
        Ok(Some(SnmpDriver::read_back(self).await?))
    }

    /// PortLists come from this session's own walk, not from `state`: ports the batch does
    /// not name keep exactly what the switch has.
    async fn apply(
        &mut self,
        _state: &SwitchState,
        changes: &[PortChange],
    ) -> Result<SwitchState, DriverError> {
        Ok(SnmpDriver::apply(self, changes).await?)
    }

    /// UDP: nothing to tear down.
    async fn close(self) {}
}
