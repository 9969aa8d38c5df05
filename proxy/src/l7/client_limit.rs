//! Open connections per client address, counted across all workers without a lock.
//!
//! One fixed table of atomic counters is shared by every worker (it is the one piece of the
//! request path that must be process-wide: a limit per worker would multiply by the number of
//! workers, and `SO_REUSEPORT` spreads one client's connections over all of them). An address
//! picks its counter by hash (IPv6 by its /64 prefix, since one host often owns a whole /64);
//! two addresses that share a counter share the limit, which can only make it stricter.
//! A [`ClientSlot`] gives its count back when the connection ends.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Number of counters: 64 Ki × 4 bytes.
const SLOTS: usize = 1 << 16;

/// The process-wide table of per-address connection counts.
pub struct ClientLimit {
    max: u32,
    counts: Box<[AtomicU32]>,
}

/// One counted connection; dropping it releases the count.
pub struct ClientSlot {
    table: Arc<ClientLimit>,
    index: usize,
}

impl ClientLimit {
    /// A table allowing `max` connections per address; `None` when `max` is 0 (no limit).
    pub fn new(max: u32) -> Option<Arc<Self>> {
        (max > 0).then(|| {
            Arc::new(Self {
                max,
                counts: (0..SLOTS).map(|_| AtomicU32::new(0)).collect(),
            })
        })
    }

    /// Counts a new connection from `ip`, or refuses it when the address is at its limit.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let index = slot_of(ip);
        let previous = self.counts[index].fetch_add(1, Ordering::AcqRel);
        if previous >= self.max {
            self.counts[index].fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ClientSlot {
            table: self.clone(),
            index,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.table.counts[self.index].fetch_sub(1, Ordering::AcqRel);
    }
}

/// The counter of an address: IPv4 as is, IPv6 by its /64 prefix (IPv4-mapped as IPv4).
fn slot_of(ip: IpAddr) -> usize {
    let key: u64 = match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u64::from(u32::from(v4)),
            None => (u128::from(v6) >> 64) as u64 ^ (1 << 63),
        },
    };
    // Fibonacci hashing: the top bits of the product spread neighbouring addresses.
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - 16)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_holds_and_released_slots_count_again() {
        let table = ClientLimit::new(2).unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let a = table.try_acquire(ip).unwrap();
        let _b = table.try_acquire(ip).unwrap();
        assert!(table.try_acquire(ip).is_none());
        drop(a);
        assert!(table.try_acquire(ip).is_some());
    }

    #[test]
    fn zero_means_no_table() {
        assert!(ClientLimit::new(0).is_none());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(slot_of(a), slot_of(b));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(slot_of(v4), slot_of(mapped));
    }
}
