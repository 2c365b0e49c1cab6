//! iPXE scripts: `boot::script::mac_of_script` of a requested file name (`GET /boot/<name>`),
//! then `boot::script::render` for that MAC with hostile inventory strings — machine name,
//! root-path, initiator, storage address, secrets URL or refusal — split from the input at NUL
//! bytes, against fixed boot settings. Invariant checked: whatever the strings, the script is
//! one of the shapes `render` writes: `#!ipxe`, then only `echo nhn:`, `kernel`, `initrd`,
//! `boot`, `sleep` and `exit` lines (no string can start a command line of its own).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nhn::boot::script::{self, Settings, Target};

const COMMANDS: [&str; 6] = [
    "echo nhn: ",
    "kernel ",
    "initrd ",
    "boot",
    "sleep ",
    "exit ",
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\0').map(str::to_owned);
    let mut next = || fields.next();
    let Some(mac) = next().and_then(|n| script::mac_of_script(&n)) else {
        return;
    };
    let name = next().unwrap_or_default();
    let iscsi = next().zip(next());
    let storage = next();
    let secrets = next().map(|s| match s.strip_prefix('!') {
        Some(why) => Err(why.to_owned()),
        None => Ok(s),
    });
    let target = Target {
        name,
        iscsi,
        storage,
    };
    let settings = Settings {
        base_url: "http://10.96.0.1:8080".into(),
        kernel: "vmlinuz".into(),
        initrd: "initrd/nhn-initrd.img".into(),
        cmdline: "console=ttyS0".into(),
        secrets,
    };
    for t in [None, Some(&target)] {
        let out = script::render(&mac, t, &settings);
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("#!ipxe"), "{out}");
        for line in lines {
            assert!(
                COMMANDS.iter().any(|c| line.starts_with(c)),
                "a line render does not write: {line:?}\n{out}"
            );
        }
    }
});
