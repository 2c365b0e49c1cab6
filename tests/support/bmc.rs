//! The BMC emulators of the power tests (bmc/fakebmc.py: pyghmi's IPMI BMC; bmc/redfish_emu.py:
//! sushy-tools' fake Redfish driver with process power), and the Python that runs them.

use std::path::{Path, PathBuf};

/// The Python that runs the BMC emulators, or `None` after printing SKIP (panics under CI).
pub fn bmc_python(test: &str) -> Option<PathBuf> {
    let python = std::env::var_os("NHN_BMC_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/venv-bmc/bin/python"),
        PathBuf::from,
    );
    let usable = std::process::Command::new(&python)
        .args(["-c", "import pyghmi, sushy_tools, bcrypt"])
        .output()
        .is_ok_and(|o| o.status.success());
    if usable {
        return Some(python);
    }
    let reason = format!(
        "{} cannot import pyghmi and sushy_tools (tests/run.sh creates that venv; \
         NHN_BMC_PYTHON names another python)",
        python.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: prerequisite missing (CI=true: failing, not skipping): {reason}");
    }
    eprintln!("SKIP {test}: {reason}");
    None
}

/// A file of tests/support/bmc/.
pub fn support_file(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/bmc")
        .join(name)
        .display()
        .to_string()
}
