//! NDJSON import lines, as `POST /api/v1/registry/import` and
//! `hyper-registry import` read them.
//!
//! A line either validates or is rejected with one of the report codes
//! `invalid_utf8`, `invalid_json` or `invalid_entry` and a short detail.
//! It never panics. An accepted line meets the field rules and survives a
//! round trip: written back as JSON it parses to the same entry, as an
//! export followed by an import does.

#![no_main]

use hyper_registry::fuzzing::parse_import_line;
use hyper_registry::registry::{validate_slug, STATUSES};
use libfuzzer_sys::fuzz_target;

/// Maximum detail length, in bytes, of one rejected line. Each field adds
/// at most a few short messages, so the detail must not grow with the line.
const MAX_DETAIL_BYTES: usize = 4096;

fuzz_target!(|data: &[u8]| {
    match parse_import_line(data) {
        Ok(input) => {
            assert!(
                validate_slug("name", &input.name, true).is_ok(),
                "name {:?}",
                input.name
            );
            assert!(validate_slug("category", &input.category, false).is_ok());
            if let Some(status) = &input.status {
                assert!(STATUSES.contains(&status.as_str()), "status {status:?}");
            }
            if let Some(tags) = &input.tags {
                assert!(tags.len() <= 32, "{} tags accepted", tags.len());
                for tag in tags {
                    assert!(!tag.is_empty(), "empty tag accepted");
                    assert_eq!(tag.trim(), tag, "untrimmed tag accepted");
                }
            }

            let line = serde_json::to_vec(&input).expect("an entry serialises");
            match parse_import_line(&line) {
                Ok(again) => assert_eq!(again, input, "entry changed on a round trip"),
                Err((code, detail)) => panic!(
                    "accepted entry rejected on a round trip ({code}: {detail}): {}",
                    String::from_utf8_lossy(&line)
                ),
            }
        }
        Err((code, detail)) => {
            assert!(
                matches!(code, "invalid_utf8" | "invalid_json" | "invalid_entry"),
                "unexpected code {code}"
            );
            assert!(!detail.is_empty(), "empty detail for {code}");
            assert!(!detail.contains(" at line "), "detail gives a position: {detail}");
            assert!(
                detail.len() <= MAX_DETAIL_BYTES,
                "{code} detail of {} bytes for a line of {} bytes",
                detail.len(),
                data.len()
            );
        }
    }
});
