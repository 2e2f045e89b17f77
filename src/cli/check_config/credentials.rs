//! Checklist items about secrets and sign-in: production mode, the JWT and
//! encryption keys, and MFA.

use super::{finding, Finding, Verdict};
use crate::config::{Config, Environment};

pub(super) fn production_mode(config: &Config) -> Finding {
    match config.environment {
        Environment::Production => finding("production mode", Verdict::Pass, "HYPER_REGISTRY_ENV=production", None),
        Environment::Development => finding(
            "production mode",
            Verdict::Fail,
            "HYPER_REGISTRY_ENV is development, which allows generated keys",
            Some("set HYPER_REGISTRY_ENV=production"),
        ),
    }
}

pub(super) fn jwt_secret(config: &Config) -> Finding {
    const ITEM: &str = "strong JWT secret key (at least 32 characters)";
    let fix = Some("set JWT_SECRET_KEY to the output of `hyper-registry secret generate`");
    let Some(key) = &config.jwt_secret_key else {
        return finding(
            ITEM,
            Verdict::Fail,
            "JWT_SECRET_KEY is not set, so a generated development key is used",
            fix,
        );
    };
    let length = key.expose().trim().chars().count();
    let distinct: std::collections::HashSet<char> = key.expose().chars().collect();
    if crate::config::is_weak_jwt_key(key.expose()) {
        return finding(
            ITEM,
            Verdict::Fail,
            format!(
                "JWT_SECRET_KEY is set but weak ({length} characters, {} distinct)",
                distinct.len()
            ),
            fix,
        );
    }
    let weak_previous = config
        .jwt_secret_key_previous
        .iter()
        .filter(|key| crate::config::is_weak_jwt_key(key.expose()))
        .count();
    if weak_previous > 0 {
        return finding(
            ITEM,
            Verdict::Fail,
            format!("JWT_SECRET_KEY_PREVIOUS holds {weak_previous} weak key(s), which still verify tokens"),
            Some("remove weak keys from JWT_SECRET_KEY_PREVIOUS once the tokens they signed have expired"),
        );
    }
    finding(
        ITEM,
        Verdict::Pass,
        format!("JWT_SECRET_KEY is set ({length} characters)"),
        None,
    )
}

pub(super) fn encryption_key(config: &Config) -> Finding {
    const ITEM: &str = "database encryption (ENCRYPTION_KEY)";
    let fix = Some("set ENCRYPTION_KEY to the output of `hyper-registry secret generate`");
    let Some(key) = &config.encryption_key else {
        return finding(
            ITEM,
            Verdict::Fail,
            "ENCRYPTION_KEY is not set, so a generated development key is used",
            fix,
        );
    };
    let distinct: std::collections::HashSet<u8> = key.iter().copied().collect();
    if distinct.len() < 8 {
        return finding(ITEM, Verdict::Fail, "ENCRYPTION_KEY is set but has repeated bytes", fix);
    }
    let previous = config.encryption_key_previous.len();
    let detail = format!(
        "ENCRYPTION_KEY is set (key id {}); {previous} old keys in ENCRYPTION_KEY_PREVIOUS",
        hex::encode(crate::crypto::key_id(key))
    );
    if previous > 0 {
        return finding(
            ITEM,
            Verdict::Warn,
            detail,
            Some("finish the rotation with `hyper-registry encryption rewrap`, then remove ENCRYPTION_KEY_PREVIOUS"),
        );
    }
    finding(ITEM, Verdict::Pass, detail, None)
}

pub(super) fn mfa(config: &Config) -> Finding {
    const ITEM: &str = "multi-factor authentication";
    let roles = &config.mfa_required_roles;
    if roles.iter().any(|role| role == "admin") {
        return finding(
            ITEM,
            Verdict::Pass,
            format!("MFA_REQUIRED_ROLES={}", roles.join(",")),
            None,
        );
    }
    let detail = if roles.is_empty() {
        "MFA_REQUIRED_ROLES is empty: nobody must use MFA".to_string()
    } else {
        format!("MFA_REQUIRED_ROLES={} does not include admin", roles.join(","))
    };
    finding(
        ITEM,
        Verdict::Warn,
        detail,
        Some("set MFA_REQUIRED_ROLES=admin (and other privileged roles)"),
    )
}
