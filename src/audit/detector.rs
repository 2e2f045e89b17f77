//! Counting detectors: raise an event when one subject (an address, an
//! account) reaches a threshold of suspicious events within a window, at most
//! once per subject per window.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

use super::{AuditEvent, Severity, Status};
use crate::config::DetectorThresholds;

/// Subjects tracked at most. Beyond this, expired windows are dropped and,
/// if every window is still open, the oldest tenth. Dropped counts restart.
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
        if windows.len() >= MAX_SUBJECTS {
            drop_oldest_tenth(&mut windows);
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

/// Drops the oldest tenth of the windows, so that memory stays bounded when
/// many subjects appear within one window and the scan above runs rarely.
fn drop_oldest_tenth(windows: &mut HashMap<String, Window>) {
    let mut starts: Vec<DateTime<Utc>> = windows.values().map(|w| w.started).collect();
    starts.sort_unstable();
    let cutoff = starts[starts.len() / 10];
    windows.retain(|_, w| w.started > cutoff);
}

/// An alarm: the event type, severity and description of the security
/// event a detector raises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    pub event_type: &'static str,
    pub severity: Severity,
    pub description: String,
}

impl Alarm {
    /// Turns the alarm into an event at `now`, to be filled with the
    /// request's fields by the caller.
    pub fn event(&self, now: DateTime<Utc>) -> AuditEvent {
        AuditEvent::new(now, self.event_type, "detector", Status::Denied, self.severity)
            .description(self.description.clone())
    }
}

/// The detectors of the trail: each counts one kind of suspicious event per
/// subject and raises an alarm once per subject per window.
pub struct Detectors {
    thresholds: DetectorThresholds,
    failed_logins_by_address: BurstDetector,
    failed_logins_by_account: BurstDetector,
    permission_denials: BurstDetector,
    rate_limit_rejections: BurstDetector,
    unusable_api_keys: BurstDetector,
    revoked_key_uses: BurstDetector,
}

impl Detectors {
    pub fn new(thresholds: DetectorThresholds) -> Detectors {
        let window = Duration::minutes(i64::from(thresholds.window_minutes));
        Detectors {
            thresholds,
            failed_logins_by_address: BurstDetector::new(thresholds.failed_logins, window),
            failed_logins_by_account: BurstDetector::new(thresholds.failed_logins, window),
            permission_denials: BurstDetector::new(thresholds.permission_denials, window),
            rate_limit_rejections: BurstDetector::new(thresholds.rate_limit_rejections, window),
            unusable_api_keys: BurstDetector::new(thresholds.invalid_api_keys, window),
            revoked_key_uses: BurstDetector::new(1, window),
        }
    }

    /// Returns the window as words, e.g. `5 minutes` or `1 minute`.
    fn window(&self) -> String {
        match self.thresholds.window_minutes {
            1 => "1 minute".to_string(),
            minutes => format!("{minutes} minutes"),
        }
    }

    /// Counts a failed login from `address` against `account` (a user id, or
    /// a digest of an unknown username so that it never reaches the log).
    pub fn failed_login(&self, address: &str, account: &str, now: DateTime<Utc>) -> Vec<Alarm> {
        let threshold = self.thresholds.failed_logins;
        let mut alarms = Vec::new();
        if self.failed_logins_by_address.record(address, now) {
            alarms.push(Alarm {
                event_type: "brute_force_suspected",
                severity: Severity::Critical,
                description: format!(
                    "{threshold} failed logins within {} from address {address}",
                    self.window()
                ),
            });
        }
        if self.failed_logins_by_account.record(account, now) {
            alarms.push(Alarm {
                event_type: "brute_force_suspected",
                severity: Severity::Critical,
                description: format!("{threshold} failed logins within {} against one account", self.window()),
            });
        }
        alarms
    }

    /// Counts a 403 response for `principal` (user or key id).
    pub fn permission_denied(&self, principal: &str, now: DateTime<Utc>) -> Option<Alarm> {
        self.permission_denials.record(principal, now).then(|| Alarm {
            event_type: "permission_denial_burst",
            severity: Severity::High,
            description: format!(
                "{} permission denials within {} for one principal",
                self.thresholds.permission_denials,
                self.window()
            ),
        })
    }

    /// Counts a 429 response for `client` (its rate-limit bucket).
    pub fn rate_limited(&self, client: &str, now: DateTime<Utc>) -> Option<Alarm> {
        self.rate_limit_rejections.record(client, now).then(|| Alarm {
            event_type: "rate_limit_abuse",
            severity: Severity::High,
            description: format!(
                "{} rate-limit rejections within {} for one client",
                self.thresholds.rate_limit_rejections,
                self.window()
            ),
        })
    }

    /// Counts an invalid, expired or revoked API key presented from `address`.
    pub fn unusable_api_key(&self, address: &str, now: DateTime<Utc>) -> Option<Alarm> {
        self.unusable_api_keys.record(address, now).then(|| Alarm {
            event_type: "api_key_burst",
            severity: Severity::High,
            description: format!(
                "{} or more unusable API keys from one address within {}",
                self.thresholds.invalid_api_keys,
                self.window()
            ),
        })
    }

    /// Counts a use of a revoked key: one alarm per key per window.
    pub fn revoked_key_used(&self, key_id: &str, now: DateTime<Utc>) -> Option<Alarm> {
        self.revoked_key_uses.record(key_id, now).then(|| Alarm {
            event_type: "revoked_api_key_alarm",
            severity: Severity::High,
            description: format!("revoked API key {key_id} is still in use"),
        })
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

    #[test]
    fn subjects_stay_bounded_within_one_window() {
        let detector = BurstDetector::new(3, Duration::minutes(5));
        let start = Utc::now();

        for i in 0..MAX_SUBJECTS + 100 {
            let now = start + Duration::milliseconds(i as i64);
            detector.record(&format!("subject-{i}"), now);
        }

        let tracked = detector.windows.lock().unwrap().len();
        assert!(tracked <= MAX_SUBJECTS, "{tracked} subjects tracked");
        assert!(
            tracked >= MAX_SUBJECTS * 8 / 10,
            "only the oldest were dropped: {tracked}"
        );
    }
}
