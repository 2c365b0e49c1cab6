//! Switch read-back: a switch's `show` output (what an SSH session returns, so whatever the
//! switch or a man in the middle prints) through `switch::readback::parse` with every parser
//! the template sets name — `openvswitch` (ovs-vsctl CSV), `cisco-ios` (also Arista EOS),
//! `junos` and `cumulus-nvue` — and the rendering of its result (`VlanSet` display) or of its
//! error (the operator's message). Invariant checked: any text gives a state or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nhn::switch::readback::{self, Parser};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for parser in [
        Parser::Openvswitch,
        Parser::CiscoIos,
        Parser::Junos,
        Parser::CumulusNvue,
    ] {
        match readback::parse(parser, text) {
            Ok(Some(state)) => {
                let _ = state.vlans.to_string();
                for plan in state.ports.values() {
                    let _ = format!("{plan:?}");
                }
            }
            Ok(None) => {}
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
