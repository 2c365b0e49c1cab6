//! The appliance's configuration: one TOML file in which every field has a default, so
//! `nhn serve` with no file runs on the embedded default (data in `./nhn-data`, HTTP on
//! loopback, no DHCP anywhere). Unknown keys are errors with file, line and column, because
//! a misspelt key silently ignored is how a boot server ends up answering the wrong network.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::inventory::site::line_col;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the inventory (`nhn.db`), volumes and generated boot files live.
    pub data_dir: PathBuf,
    pub http: Http,
    pub log: Log,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./nhn-data"),
            http: Http::default(),
            log: Log::default(),
        }
    }
}

/// The operator/boot HTTP listener (status page, /metrics, /healthz; later /RPC2 and /boot).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    pub listen: SocketAddr,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// A tracing filter such as `info` or `nhn=debug,info`; `NHN_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

impl Config {
    /// Loads `path`, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })
    }

    /// The effective configuration as TOML (`nhn config show`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("nhn.db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_embedded_default() {
        let c = Config::parse(Path::new("x.toml"), "").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn unknown_key_names_file_line_and_column() {
        let err = Config::parse(
            Path::new("site.toml"),
            "data_dir = \"/x\"\n[http]\nlisten = \"0.0.0.0:80\"\nlistn = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("site.toml:4:1: "), "{err}");
        assert!(err.contains("listn"), "{err}");
    }

    #[test]
    fn rendered_default_parses_back_to_itself() {
        let c = Config::default();
        assert_eq!(Config::parse(Path::new("-"), &c.to_toml()).unwrap(), c);
    }
}
