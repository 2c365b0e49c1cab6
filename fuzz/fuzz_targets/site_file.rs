//! Site files: TOML text through what `nhn inventory import` does before it touches the
//! database — `inventory::site::parse` (serde/toml into the site model, errors with line and
//! column) and `inventory::site::validate` (the whole-file checks: names, links, VLAN pools,
//! addresses). Invariant checked: a file that parses and validates exports (`site::to_toml`) to
//! text that parses and validates again, to the same model (export/import round trip).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nhn::inventory::site;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = site::parse("fuzz.toml", text) else {
        return;
    };
    if !site::validate(text, &parsed).is_empty() {
        return;
    }
    let exported = site::to_toml(&parsed).expect("a valid site exports");
    let again = site::parse("exported.toml", &exported).expect("an exported site parses");
    assert!(
        site::validate(&exported, &again).is_empty(),
        "an exported site does not validate:\n{exported}"
    );
    assert_eq!(parsed, again, "the export changed the site");
});
