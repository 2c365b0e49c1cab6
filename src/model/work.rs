//! What an async request asks for, as the request's row stores it (JSON in `requests.args`):
//! decided once, when the call is accepted, from the method and its arguments. The job engine
//! resolves it into the facility's command when it claims the request, and matches on it,
//! never on method names.

use serde::{Deserialize, Serialize};

/// The async work of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "work", rename_all = "snake_case")]
pub enum Work {
    /// powerOnVm.
    PowerOn,
    /// powerOffVm.
    PowerOff { force: bool },
    /// resetVm.
    Reset,
    /// restoreImage: install `image` (public id) on DISK1.
    Restore { image: String },
    /// One of the Init* methods, with its arguments.
    Configure {
        method: String,
        settings: serde_json::Value,
    },
    /// An operator's power request on a bare-metal machine.
    Machine { op: MachineOp, timeout_secs: u64 },
    /// `nhn vm move VM --host TO`: move the VM (the request's resource, by name) to hypervisor
    /// `to`, make before break: begin (the VM holds a slot on both hosts), wait up to
    /// `wait_secs` for the switches to report the destination's VLANs, then finish (the
    /// source's VLANs go) unless `finish` is false (`--no-finish`). Run by the job engine
    /// itself (`jobs::moves`), not by the facility.
    Move {
        to: String,
        finish: bool,
        wait_secs: u64,
    },
    /// `nhn vm move VM --finish`: finish the move under way (begun with `finish: false`).
    FinishMove,
}

/// The Init* methods (HAAS-API.md §2.4): settings applied to a stopped VM's disk.
pub const INIT_METHODS: [&str; 8] = [
    "setIpAddress",
    "unsetIpAddress",
    "setNetwork",
    "setPassword",
    "setSshKey",
    "setIptables",
    "setSshdConfig",
    "writeFile",
];

impl Work {
    /// The work an accepted async call asks for: `method` with its arguments (a JSON object;
    /// the client token already removed). `None` for a method that queues no work.
    pub fn from_call(method: &str, args: &serde_json::Value) -> Option<Work> {
        if let Some(op) = MachineOp::from_method(method) {
            let timeout_secs = args
                .get("timeoutSecs")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            return Some(Work::Machine { op, timeout_secs });
        }
        Some(match method {
            "powerOnVm" => Work::PowerOn,
            "powerOffVm" => Work::PowerOff {
                force: args.get("force") == Some(&serde_json::Value::Bool(true)),
            },
            "resetVm" => Work::Reset,
            "restoreImage" => Work::Restore {
                image: args
                    .get("imageId")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            },
            m if INIT_METHODS.contains(&m) => Work::Configure {
                method: m.to_owned(),
                settings: args.clone(),
            },
            _ => return None,
        })
    }

    /// The state of the VM once the work succeeded.
    pub fn success_state(&self) -> super::VmState {
        match self {
            Work::PowerOn | Work::Reset => super::VmState::Running,
            _ => super::VmState::Stopped,
        }
    }

    /// Whether its end sets the VM's state (power and disk work on a VM; not a bare-metal
    /// machine's power, and not a move, which leaves the VM's power as it is).
    pub fn sets_vm_state(&self) -> bool {
        !matches!(
            self,
            Work::Machine { .. } | Work::Move { .. } | Work::FinishMove
        )
    }

    /// Whether it boots a stopped VM into nhn's initrd (install or configure mode): the VM
    /// needs a hypervisor for the run, chosen when the request is claimed.
    pub fn boots_offline(&self) -> bool {
        matches!(self, Work::Restore { .. } | Work::Configure { .. })
    }

    /// Whether it moves a VM between hypervisors (run by the engine, not the facility).
    pub fn is_move(&self) -> bool {
        matches!(self, Work::Move { .. } | Work::FinishMove)
    }
}

/// What an operator asks of a bare-metal machine (`nhn power`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineOp {
    On,
    /// ACPI soft-off, forced after `[power] soft_off_secs`.
    Off,
    ForceOff,
    /// Hard reset; a machine that is off is powered on.
    Reset,
    /// Boot from the network (PXE) once, at the next power on or reset.
    PxeOnce,
}

impl MachineOp {
    /// The request method that asks for it (`requests.method`).
    pub fn method(self) -> &'static str {
        match self {
            MachineOp::On => "powerOnMachine",
            MachineOp::Off => "powerOffMachine",
            MachineOp::ForceOff => "forcePowerOffMachine",
            MachineOp::Reset => "resetMachine",
            MachineOp::PxeOnce => "pxeBootMachine",
        }
    }

    /// The op a request method asks for, if it is a machine method.
    pub fn from_method(method: &str) -> Option<MachineOp> {
        [
            MachineOp::On,
            MachineOp::Off,
            MachineOp::ForceOff,
            MachineOp::Reset,
            MachineOp::PxeOnce,
        ]
        .into_iter()
        .find(|op| op.method() == method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn calls_become_work_and_work_round_trips_through_json() {
        for (method, args, work) in [
            ("powerOnVm", json!({"vmId": "vm-1"}), Some(Work::PowerOn)),
            (
                "powerOffVm",
                json!({"vmId": "vm-1", "force": true}),
                Some(Work::PowerOff { force: true }),
            ),
            (
                "powerOffVm",
                json!({}),
                Some(Work::PowerOff { force: false }),
            ),
            ("resetVm", json!({}), Some(Work::Reset)),
            (
                "restoreImage",
                json!({"vmId": "vm-1", "imageId": "img-centos"}),
                Some(Work::Restore {
                    image: "img-centos".into(),
                }),
            ),
            (
                "setPassword",
                json!({"vmId": "vm-1", "user": "root"}),
                Some(Work::Configure {
                    method: "setPassword".into(),
                    settings: json!({"vmId": "vm-1", "user": "root"}),
                }),
            ),
            (
                "resetMachine",
                json!({"timeoutSecs": 30}),
                Some(Work::Machine {
                    op: MachineOp::Reset,
                    timeout_secs: 30,
                }),
            ),
            ("allocateVm", json!({}), None),
            ("getVmInfo", json!({}), None),
        ] {
            let got = Work::from_call(method, &args);
            assert_eq!(got, work, "{method}");
            if let Some(w) = got {
                let text = serde_json::to_string(&w).unwrap();
                assert_eq!(serde_json::from_str::<Work>(&text).unwrap(), w, "{text}");
            }
        }
        assert_eq!(
            serde_json::to_string(&Work::PowerOff { force: true }).unwrap(),
            r#"{"work":"power_off","force":true}"#
        );
    }

    #[test]
    fn success_moves_the_vm_to_running_only_for_power_on_and_reset() {
        assert_eq!(
            Work::PowerOn.success_state(),
            super::super::VmState::Running
        );
        assert_eq!(Work::Reset.success_state(), super::super::VmState::Running);
        assert_eq!(
            Work::PowerOff { force: false }.success_state(),
            super::super::VmState::Stopped
        );
        assert!(
            !Work::Machine {
                op: MachineOp::On,
                timeout_secs: 0
            }
            .sets_vm_state()
        );
        assert!(!Work::FinishMove.sets_vm_state() && Work::FinishMove.is_move());
        let moving = Work::Move {
            to: "Hypervisor-3".into(),
            finish: false,
            wait_secs: 60,
        };
        assert!(!moving.sets_vm_state() && moving.is_move());
        assert!(Work::Reset.sets_vm_state() && !Work::Reset.is_move());
        let text = serde_json::to_string(&moving).unwrap();
        assert_eq!(
            text,
            r#"{"work":"move","to":"Hypervisor-3","finish":false,"wait_secs":60}"#
        );
        assert_eq!(serde_json::from_str::<Work>(&text).unwrap(), moving);
    }
}
