//! Permission strings, as sent in role definitions and API key requests.
//!
//! The input is two comma-separated permission lists split at the first
//! `|`. `Permission::parse` accepts only `*`, a known name, or `prefix:*`
//! for a known prefix, keeps the text unchanged, and truncates the name in
//! its error to 64 characters. The accepted permissions form two sets
//! whose `allows`, `covers`, `effective` and `intersect` must agree with
//! each other and with the list of known permissions.

#![no_main]

use hyper_registry::rbac::{Permission, PermissionSet, UnknownPermission, KNOWN_PERMISSIONS};
use libfuzzer_sys::fuzz_target;

/// Returns whether `name` is valid by the rule written in `rbac.rs`.
fn reference_is_valid(name: &str) -> bool {
    if name == "*" || KNOWN_PERMISSIONS.contains(&name) {
        return true;
    }
    match name.strip_suffix(":*") {
        Some(prefix) => KNOWN_PERMISSIONS
            .iter()
            .any(|known| known.starts_with(&format!("{prefix}:"))),
        None => false,
    }
}

fn parse_list(text: &str) -> PermissionSet {
    let mut accepted = Vec::new();
    for name in text.split(',') {
        match Permission::parse(name) {
            Ok(permission) => {
                assert!(reference_is_valid(name), "{name:?} accepted");
                assert_eq!(permission.as_str(), name);
                assert_eq!(permission.to_string(), name);
                assert_eq!(Permission::parse(permission.as_str()).as_ref(), Ok(&permission));
                accepted.push(permission);
            }
            Err(UnknownPermission(shown)) => {
                assert!(!reference_is_valid(name), "{name:?} rejected");
                let expected: String = name.chars().take(64).collect();
                assert_eq!(shown, expected, "error text for {name:?}");
            }
        }
    }
    PermissionSet::new(accepted)
}

fn holds_star(set: &PermissionSet) -> bool {
    set.iter().any(|permission| permission.as_str() == "*")
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (first, second) = text.split_once('|').unwrap_or((&text, ""));
    let held = parse_list(first);
    let requested = parse_list(second);

    for set in [&held, &requested] {
        let effective = set.effective();
        for known in KNOWN_PERMISSIONS {
            assert_eq!(
                set.allows(known),
                effective.iter().any(|name| name == known),
                "effective() and allows({known}) disagree"
            );
        }
        assert!(set.covers(set), "a set must cover itself: {effective:?}");
        assert_eq!(set.allows("*"), holds_star(set), "only `*` itself allows `*`");
    }

    let held_effective = held.effective();
    let requested_effective = requested.effective();
    let expanded_subset = requested_effective.iter().all(|name| held_effective.contains(name));
    let covers = held.covers(&requested);
    if covers {
        assert!(expanded_subset, "covers() grants more than the holder has");
    }
    if holds_star(&requested) {
        assert_eq!(covers, holds_star(&held), "`*` is covered only by `*`");
    } else {
        assert_eq!(covers, expanded_subset, "covers() and effective() disagree");
    }

    let both = held.intersect(&requested);
    let expected: Vec<String> = held_effective
        .iter()
        .filter(|name| requested_effective.contains(name))
        .cloned()
        .collect();
    assert_eq!(both.effective(), expected, "intersect()");
    assert!(!holds_star(&both), "an intersection never holds `*`");
});
