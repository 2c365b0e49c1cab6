//! [`Machines`] on SQLite.

use rusqlite::OptionalExtension;

use super::Tx;
use crate::inventory::machines::{MachineBmc, Machines};
use crate::inventory::site::PowerDriver;
use crate::inventory::{Error, Result};

impl Machines for Tx<'_> {
    fn bmc(&self, name: &str) -> Result<Option<MachineBmc>> {
        let row: Option<(String, String, Option<String>, Option<String>)> = self
            .conn
            .query_row(
                "SELECT name, power_driver, bmc_address, bmc_credentials FROM machines WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((name, driver, address, credential)) = row else {
            return Ok(None);
        };
        let driver = match driver.as_str() {
            "none" => PowerDriver::None,
            "agent" => PowerDriver::Agent,
            "ipmi" => PowerDriver::Ipmi,
            "redfish" => PowerDriver::Redfish,
            other => {
                return Err(Error::Invalid(format!(
                    "corrupt power_driver {other:?} of machine {name:?}"
                )));
            }
        };
        Ok(Some(MachineBmc {
            name,
            driver,
            address,
            credential,
        }))
    }

    fn power_driver(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT power_driver FROM machines WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?)
    }
}
