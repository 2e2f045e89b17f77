use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

use super::{ConfigError, SecretString};

/// The raw variables, with typed getters that turn a bad value into a
/// [`ConfigError`] naming the variable. Empty values count as unset.
pub(super) struct Vars(HashMap<String, String>);

impl Vars {
    pub(super) fn new<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Vars(vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    pub(super) fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    pub(super) fn secret(&self, name: &str) -> Option<SecretString> {
        self.0.get(name).filter(|v| !v.is_empty()).map(SecretString::new)
    }

    pub(super) fn secret_list(&self, name: &str) -> Vec<SecretString> {
        self.get(name)
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(SecretString::new)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) fn parse<T>(&self, name: &'static str, default: &str, expected: &str) -> Result<T, ConfigError>
    where
        T: FromStr,
    {
        let raw = self.get(name).unwrap_or_else(|| default.to_string());
        raw.parse().map_err(|_| ConfigError {
            variable: name,
            problem: format!("`{raw}` is not valid"),
            fix: format!("set it to {expected}"),
        })
    }

    pub(super) fn number<T>(&self, name: &'static str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Display + Copy,
    {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        let out_of_range = || ConfigError {
            variable: name,
            problem: format!("`{raw}` is not a whole number from {min} to {max}"),
            fix: format!("set a whole number from {min} to {max}, or unset it for the default {default}"),
        };
        let value: T = raw.parse().map_err(|_| out_of_range())?;
        if value < min || value > max {
            return Err(out_of_range());
        }
        Ok(value)
    }

    /// Reads a boolean: `true`/`false` (also `1`/`0`, `yes`/`no`); unset is false.
    pub(super) fn flag(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("false" | "0" | "no") => Ok(false),
            Some("true" | "1" | "yes") => Ok(true),
            Some(other) => Err(ConfigError {
                variable: name,
                problem: format!("`{other}` is not a boolean"),
                fix: "set it to `true` or `false`".into(),
            }),
        }
    }
}
