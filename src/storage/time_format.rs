//! Timestamps are stored as fixed-width RFC 3339 text in UTC so that they
//! sort correctly as strings and compare equal across backends.

use chrono::{DateTime, NaiveDateTime, Utc};

use super::StorageError;

const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

pub(crate) fn encode(time: DateTime<Utc>) -> String {
    time.format(FORMAT).to_string()
}

pub(crate) fn decode(text: &str) -> Result<DateTime<Utc>, StorageError> {
    NaiveDateTime::parse_from_str(text, FORMAT)
        .map(|naive| naive.and_utc())
        .map_err(|_| StorageError::Corrupt(format!("bad timestamp `{text}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_round_trip_keeps_microseconds() {
        let now = Utc::now();
        let decoded = decode(&encode(now)).unwrap();
        assert_eq!(decoded.timestamp_micros(), now.timestamp_micros());
    }
}
