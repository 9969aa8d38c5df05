//! Plans' quotas: requests per consumer per calendar day or month (UTC), counted across the
//! workers and kept across reloads and restarts in a small file.
//!
//! Like a rate limit, each worker keeps its own copy of every consumer's count for the current
//! period: it counts what it admits at once and sends the others, on the tick, what it
//! admitted since the last; each adds the others' counts to its copy. So the process admits a
//! quota within what the other workers admitted in the last tick. Worker 0 writes the counts
//! to `[auth] quota_file` (a new file renamed over the old, so a crash leaves the last whole
//! one) at most once a second when they changed, and on shutdown; every worker reads it when
//! it starts. Lines: `consumer period used`, the period a day number or a month number since
//! 1970.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::QuotaPeriod;

/// The period `unix` (seconds since the epoch) falls in, and the seconds left in it.
pub fn period(kind: QuotaPeriod, unix: u64) -> (u32, u64) {
    let day = unix / 86_400;
    match kind {
        QuotaPeriod::Day => (day as u32, 86_400 - unix % 86_400),
        QuotaPeriod::Month => {
            let (year, month) = civil(day);
            let index = (year - 1970) * 12 + (month - 1);
            let (next_year, next_month) = if month == 12 {
                (year + 1, 1)
            } else {
                (year, month + 1)
            };
            let next = days_from_civil(next_year, next_month) * 86_400;
            (index as u32, next.saturating_sub(unix))
        }
    }
}

/// The (year, month) of a day number (Howard Hinnant's `civil_from_days`).
fn civil(day: u64) -> (u64, u64) {
    let z = day + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month)
}

/// The day number of the first of `month` in `year`.
fn days_from_civil(year: u64, month: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[derive(Clone, Copy, Debug, Default)]
struct Count {
    period: u32,
    used: u64,
    unreported: u32,
}

/// What one worker's quota check says.
pub enum QuotaDecision {
    Allow,
    /// Over; the period ends in this many seconds.
    Refuse {
        retry_after: u64,
    },
}

/// One worker's quota counts, by consumer.
#[derive(Default)]
pub struct Quotas {
    counts: RefCell<HashMap<Arc<str>, Count>>,
    file: Option<PathBuf>,
    /// Counts changed since the file was last written.
    dirty: Cell<bool>,
}

/// What a worker admitted under quotas since its last report: (consumer, period, count).
pub type QuotaUsage = Vec<(Arc<str>, u32, u32)>;

impl Quotas {
    /// The counts kept in `file` (none when it does not exist yet).
    pub fn load(file: Option<&Path>) -> Self {
        let mut counts = HashMap::new();
        if let Some(text) = file.and_then(|f| std::fs::read_to_string(f).ok()) {
            for line in text.lines() {
                let mut words = line.split_whitespace();
                if let (Some(name), Some(period), Some(used)) =
                    (words.next(), words.next(), words.next())
                {
                    if let (Ok(period), Ok(used)) = (period.parse(), used.parse()) {
                        counts.insert(
                            Arc::from(name),
                            Count {
                                period,
                                used,
                                unreported: 0,
                            },
                        );
                    }
                }
            }
        }
        Self {
            counts: RefCell::new(counts),
            file: file.map(Path::to_path_buf),
            dirty: Cell::new(false),
        }
    }

    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Counts a request of `consumer` under a quota of `amount` per `kind`, if it fits.
    pub fn check(
        &self,
        consumer: &Arc<str>,
        amount: u64,
        kind: QuotaPeriod,
        unix: u64,
    ) -> QuotaDecision {
        let (now, left) = period(kind, unix);
        let mut counts = self.counts.borrow_mut();
        let count = counts.entry(consumer.clone()).or_default();
        if count.period != now {
            *count = Count {
                period: now,
                used: 0,
                unreported: 0,
            };
        }
        if count.used >= amount {
            return QuotaDecision::Refuse { retry_after: left };
        }
        count.used += 1;
        count.unreported += 1;
        self.dirty.set(true);
        QuotaDecision::Allow
    }

    /// What this worker admitted since the last report.
    pub fn report(&self) -> QuotaUsage {
        let mut usage = Vec::new();
        for (name, count) in self.counts.borrow_mut().iter_mut() {
            if count.unreported > 0 {
                usage.push((name.clone(), count.period, count.unreported));
                count.unreported = 0;
            }
        }
        usage
    }

    /// What another worker admitted.
    pub fn absorb(&self, usage: &QuotaUsage) {
        let mut counts = self.counts.borrow_mut();
        for (name, period, n) in usage {
            let count = counts.entry(name.clone()).or_default();
            if count.period < *period {
                *count = Count {
                    period: *period,
                    used: 0,
                    unreported: 0,
                };
            }
            if count.period == *period {
                count.used += u64::from(*n);
            }
        }
        self.dirty.set(true);
    }

    /// Writes the counts to the file if they changed (a new file renamed over the old).
    pub fn save(&self) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if !self.dirty.replace(false) {
            return Ok(());
        }
        let mut text = String::new();
        for (name, count) in self.counts.borrow().iter() {
            use std::fmt::Write as _;
            let _ = writeln!(text, "{name} {} {}", count.period, count.used);
        }
        let partial = file.with_extension("partial");
        std::fs::write(&partial, text)?;
        std::fs::rename(&partial, file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_follow_the_calendar() {
        // 2026-12-01T20:00:00Z.
        let t = 1_796_155_200;
        let (day, left) = period(QuotaPeriod::Day, t);
        assert_eq!(day, 20_788);
        assert_eq!(left, 4 * 3600);
        let (month, left) = period(QuotaPeriod::Month, t);
        assert_eq!(month, (2026 - 1970) * 12 + 11);
        // Until 2027-01-01: 30 days and 4 hours.
        assert_eq!(left, 30 * 86_400 + 4 * 3600);
        // February of a leap year.
        let (_, left) = period(QuotaPeriod::Month, 1_709_251_200 - 1); // 2024-02-29T23:59:59Z
        assert_eq!(left, 1);
    }

    #[test]
    fn counts_hold_across_workers_and_restarts() {
        let dir = std::env::temp_dir().join(format!("ringwall-quota-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("quotas");
        let a = Quotas::load(Some(&file));
        let b = Quotas::load(Some(&file));
        let name: Arc<str> = Arc::from("alice");
        let t = 1_796_155_200;
        let allowed =
            |q: &Quotas| matches!(q.check(&name, 3, QuotaPeriod::Day, t), QuotaDecision::Allow);
        assert!(allowed(&a) && allowed(&a));
        b.absorb(&a.report());
        assert!(allowed(&b));
        assert!(!allowed(&b), "2 on a and 1 on b");
        a.absorb(&b.report());
        a.save().unwrap();
        let again = Quotas::load(Some(&file));
        assert!(!allowed(&again), "kept across a restart");
        // The next day starts again.
        assert!(matches!(
            again.check(&name, 3, QuotaPeriod::Day, t + 86_400),
            QuotaDecision::Allow
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
