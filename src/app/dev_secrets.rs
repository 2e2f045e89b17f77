//! Development secrets: generated once into the data directory with mode
//! 0600, so a bare `hyper-registry serve` works and restarts keep sessions.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use base64::Engine;

use crate::config::SecretString;
use crate::crypto::{random_bytes, random_token};

fn load_or_create(path: &Path, generate: impl FnOnce() -> String) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok(text.trim().to_string()),
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).with_context(|| format!("could not read {}", path.display()));
        }
        Err(_) => {}
    }
    let value = generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("could not create {}", path.display()))?;
    file.write_all(value.as_bytes())?;
    file.sync_all()?;
    Ok(value)
}

pub(super) fn jwt_secret(data_dir: &Path) -> anyhow::Result<SecretString> {
    let value = load_or_create(&data_dir.join("jwt_secret.key"), || random_token(64))?;
    if value.chars().count() < 32 {
        anyhow::bail!(
            "{} holds a key shorter than 32 characters; delete it to generate a new one",
            data_dir.join("jwt_secret.key").display()
        );
    }
    Ok(SecretString::new(value))
}

pub(super) fn encryption_key(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = data_dir.join("encryption.key");
    let value = load_or_create(&path, || {
        base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>())
    })?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .with_context(|| format!("{} is not base64", path.display()))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{} does not hold 32 bytes", path.display()))
}
