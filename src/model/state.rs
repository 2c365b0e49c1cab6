//! The states things go through (HAAS-API.md §2.1 for VMs, §2.5 for requests), the kinds of
//! customer networks, and how a switch is driven.

use super::named;

/// A VM's state (§2.1). The transitional states last while an async request runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmState {
    Stopped,
    Starting,
    Running,
    Stopping,
    Resetting,
    Installing,
    Configuring,
    Error,
}

named!(
    VmState,
    "VM state",
    [
        (Stopped, "stopped"),
        (Starting, "starting"),
        (Running, "running"),
        (Stopping, "stopping"),
        (Resetting, "resetting"),
        (Installing, "installing"),
        (Configuring, "configuring"),
        (Error, "error"),
    ]
);

impl VmState {
    /// `on` while the VM runs or is on its way up or down.
    pub fn power(self) -> Power {
        match self {
            VmState::Starting | VmState::Running | VmState::Stopping | VmState::Resetting => {
                Power::On
            }
            _ => Power::Off,
        }
    }
}

impl VmState {
    /// Whether its NICs are on the wire (running, or on its way up or down, or booted into
    /// nhn's initrd to install or configure): its VLANs must then be on its host's port.
    pub fn on_the_wire(self) -> bool {
        !matches!(self, VmState::Stopped | VmState::Error)
    }
}

/// Whether a VM (or machine) is powered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Power {
    On,
    Off,
}

named!(Power, "power state", [(On, "on"), (Off, "off")]);

/// Where an async request stands (§2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

named!(
    RequestStatus,
    "request status",
    [
        (Queued, "queued"),
        (Running, "running"),
        (Succeeded, "succeeded"),
        (Failed, "failed"),
        (Canceled, "canceled"),
    ]
);

impl RequestStatus {
    /// Queued or running: the request still holds its VM and a slot of its customer's.
    pub fn is_open(self) -> bool {
        matches!(self, RequestStatus::Queued | RequestStatus::Running)
    }
}

/// A customer network's kind (§2.2); `infra` networks come from the site file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkKind {
    L2ex,
    L3ex,
    L3sh,
    Infra,
}

named!(
    NetworkKind,
    "network type",
    [
        (L2ex, "L2EX"),
        (L3ex, "L3EX"),
        (L3sh, "L3SH"),
        (Infra, "infra"),
    ]
);

impl NetworkKind {
    /// The kinds a customer may allocate.
    pub const CUSTOMER: [NetworkKind; 3] =
        [NetworkKind::L2ex, NetworkKind::L3ex, NetworkKind::L3sh];
}

/// Which driver a switch is driven by: its `driver` in the site file and the inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    /// CLI templates over SSH (`switch-templates/<os>/`).
    Ssh,
    /// Q-BRIDGE-MIB over SNMP.
    Snmp,
}

named!(DriverKind, "switch driver", [(Ssh, "ssh"), (Snmp, "snmp")]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_through_its_text() {
        for s in VmState::ALL {
            assert_eq!(s.as_str().parse::<VmState>(), Ok(*s));
        }
        for s in RequestStatus::ALL {
            assert_eq!(s.to_string().parse::<RequestStatus>(), Ok(*s));
        }
        for k in NetworkKind::ALL {
            assert_eq!(k.as_str().parse::<NetworkKind>(), Ok(*k));
        }
        for d in DriverKind::ALL {
            assert_eq!(d.as_str().parse::<DriverKind>(), Ok(*d));
        }
        assert_eq!(
            "telnet".parse::<DriverKind>().unwrap_err().to_string(),
            "\"telnet\" is not a switch driver; use one of: ssh, snmp"
        );
        let err = "paused".parse::<VmState>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"paused\" is not a VM state; use one of: stopped, starting, running, stopping, resetting, installing, configuring, error"
        );
    }

    #[test]
    fn power_follows_the_state_table() {
        let on: Vec<&str> = VmState::ALL
            .iter()
            .filter(|s| s.power() == Power::On)
            .map(|s| s.as_str())
            .collect();
        assert_eq!(on, ["starting", "running", "stopping", "resetting"]);
    }
}
