//! Counting detectors: raise an event when one subject (an address, an
//! account) reaches a threshold of suspicious events within a window, at most
//! once per subject per window.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

/// Subjects tracked at most; the oldest windows are dropped beyond this.
const MAX_SUBJECTS: usize = 50_000;

struct Window {
    started: DateTime<Utc>,
    count: u32,
    raised: bool,
}

/// Counts events per subject in fixed windows.
pub struct BurstDetector {
    threshold: u32,
    window: Duration,
    windows: Mutex<HashMap<String, Window>>,
}

impl BurstDetector {
    pub fn new(threshold: u32, window: Duration) -> Self {
        BurstDetector {
            threshold,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event for `subject` at `now`; returns true exactly once per
    /// window, when the count reaches the threshold.
    pub fn record(&self, subject: &str, now: DateTime<Utc>) -> bool {
        let Ok(mut windows) = self.windows.lock() else {
            return false;
        };
        if windows.len() >= MAX_SUBJECTS {
            let window = self.window;
            windows.retain(|_, w| now - w.started < window);
        }
        let entry = windows.entry(subject.to_string()).or_insert(Window {
            started: now,
            count: 0,
            raised: false,
        });
        if now - entry.started >= self.window {
            *entry = Window {
                started: now,
                count: 0,
                raised: false,
            };
        }
        entry.count += 1;
        if entry.count >= self.threshold && !entry.raised {
            entry.raised = true;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_once_per_window() {
        let detector = BurstDetector::new(3, Duration::minutes(5));
        let now = Utc::now();
        let raised: Vec<bool> = (0..5).map(|_| detector.record("10.0.0.1", now)).collect();
        assert_eq!(raised, vec![false, false, true, false, false]);
        assert!(!detector.record("10.0.0.2", now), "subjects are counted apart");
        let later = now + Duration::minutes(6);
        let again: Vec<bool> = (0..3).map(|_| detector.record("10.0.0.1", later)).collect();
        assert_eq!(again, vec![false, false, true], "a new window raises again");
    }
}
