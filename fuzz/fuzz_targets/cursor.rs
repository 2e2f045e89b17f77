//! Signed pagination cursors.
//!
//! A string from outside decodes only when it is exactly what `encode`
//! wrote for that listing, so random or edited input never decodes. A
//! cursor made from the input round-trips, is rejected by every other
//! listing and key, and is rejected after any one-character change.

#![no_main]

use hyper_registry::fuzzing::{decode_cursor, encode_cursor};
use hyper_registry::storage::EntryCursor;
use libfuzzer_sys::fuzz_target;

/// The seeds in `corpus/cursor` are signed with this key.
const KEY: [u8; 32] = [7u8; 32];
const OTHER_KEY: [u8; 32] = [8u8; 32];

// The listings checked. `entries` stores an `EntryCursor`, `audit` an i64
// sequence number and a search a u32 offset.
const ENTRIES: &str = "entries";
const AUDIT: &str = "audit";
const SEARCH: &str = "search:http client";

/// Asserts that `text` decodes for no listing, or is exactly `encode`'s output.
fn check_presented(text: &str) {
    if let Ok(position) = decode_cursor::<EntryCursor>(&KEY, ENTRIES, text) {
        assert_eq!(encode_cursor(&KEY, ENTRIES, &position), text, "entries cursor");
    }
    if let Ok(sequence) = decode_cursor::<i64>(&KEY, AUDIT, text) {
        assert_eq!(encode_cursor(&KEY, AUDIT, &sequence), text, "audit cursor");
    }
    if let Ok(offset) = decode_cursor::<u32>(&KEY, SEARCH, text) {
        assert_eq!(encode_cursor(&KEY, SEARCH, &offset), text, "search cursor");
    }
    for kind in [ENTRIES, AUDIT, SEARCH] {
        assert!(
            decode_cursor::<serde_json::Value>(&OTHER_KEY, kind, text).is_err(),
            "{text:?} decodes under a key it was not signed with"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    check_presented(&String::from_utf8_lossy(data));

    // A search cursor for a query text taken from the input, as the search
    // endpoint binds each cursor to its query.
    let split = data.len().min(8);
    let mut offset_bytes = [0u8; 4];
    for (target, source) in offset_bytes.iter_mut().zip(&data[..split]) {
        *target = *source;
    }
    let offset = u32::from_le_bytes(offset_bytes);
    let query: String = String::from_utf8_lossy(&data[split..]).chars().take(256).collect();
    let kind = format!("search:{query}");

    let cursor = encode_cursor(&KEY, &kind, &offset);
    let decoded = decode_cursor::<u32>(&KEY, &kind, &cursor);
    assert_eq!(decoded.ok(), Some(offset), "cursor {cursor:?} does not round-trip");
    for other_kind in [format!("{kind} "), format!("search:{query}\0"), ENTRIES.to_string()] {
        assert!(
            decode_cursor::<u32>(&KEY, &other_kind, &cursor).is_err(),
            "cursor for {kind:?} accepted for {other_kind:?}"
        );
    }
    assert!(decode_cursor::<u32>(&OTHER_KEY, &kind, &cursor).is_err());

    let characters: Vec<char> = cursor.chars().collect();
    for index in 0..characters.len() {
        let mut edited = characters.clone();
        edited[index] = if edited[index] == 'A' { 'B' } else { 'A' };
        let edited: String = edited.into_iter().collect();
        assert!(
            decode_cursor::<u32>(&KEY, &kind, &edited).is_err(),
            "cursor edited at {index} still decodes: {edited:?}"
        );
    }
});
