//! Consistent hashing for sticky balancing: Maglev (Eisenbud et al., NSDI 2016).
//!
//! Every server gets a permutation of the table's slots from two hashes of its name; the
//! servers take turns claiming their next free slot until the table is full (a server of
//! weight w takes w turns per round). A key is hashed to a slot, and the slot names its
//! server. The hashes are fixed functions of the bytes (FNV-1a with a `SplitMix64` finish, no
//! per-process seed), so every worker, and every node, builds the same table from the same
//! names; adding or removing one server moves about its share of the keys, little else.

/// The table sizes: primes, the first at least 100 × the servers is used (Maglev's advice for
/// an even spread), at most the last.
const SIZES: [usize; 9] = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521];

/// A 64-bit hash of `bytes` with `seed`: the same on every machine and in every process.
pub fn stable_hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // `SplitMix64`'s finish: FNV's low bits alone spread poorly.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A Maglev lookup table over some servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Maglev {
    /// Slot → server index.
    table: Vec<u32>,
}

impl Maglev {
    /// The table for servers named `names` (their order does not matter to which slots a
    /// name claims, only their set), each with its weight (at least 1). `None` without servers.
    pub fn new(names: &[(&[u8], u32)]) -> Option<Self> {
        if names.is_empty() {
            return None;
        }
        let size = SIZES
            .iter()
            .copied()
            .find(|&m| m >= 100 * names.len())
            .unwrap_or(SIZES[SIZES.len() - 1]);
        let m = size as u64;
        // Claim in a fixed order (by name), so that the table does not depend on the order
        // the configuration lists the servers in.
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.sort_by(|&a, &b| names[a].0.cmp(names[b].0));
        let perms: Vec<(u64, u64)> = names
            .iter()
            .map(|(name, _)| {
                let offset = stable_hash(name, 1) % m;
                let skip = stable_hash(name, 2) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0u64; names.len()];
        let mut table = vec![u32::MAX; size];
        let mut filled = 0;
        'fill: loop {
            for &i in &order {
                for _ in 0..names[i].1.max(1) {
                    let (offset, skip) = perms[i];
                    // The server's next slot that is still free.
                    loop {
                        let slot = ((offset + next[i] * skip) % m) as usize;
                        next[i] += 1;
                        if table[slot] == u32::MAX {
                            table[slot] = i as u32;
                            filled += 1;
                            break;
                        }
                    }
                    if filled == size {
                        break 'fill;
                    }
                }
            }
        }
        Some(Self { table })
    }

    /// The server index for a key.
    pub fn lookup(&self, key: &[u8]) -> usize {
        let slot = (stable_hash(key, 3) % self.table.len() as u64) as usize;
        self.table[slot] as usize
    }

    /// How many slots the table has.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::cast_precision_loss)] // shares of test counts
mod tests {
    use super::*;

    fn servers(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:80")).collect()
    }

    fn table(names: &[String]) -> Maglev {
        let weighted: Vec<(&[u8], u32)> = names.iter().map(|n| (n.as_bytes(), 1)).collect();
        Maglev::new(&weighted).unwrap()
    }

    #[test]
    fn the_hash_is_fixed() {
        // Pinned values (computed independently): every worker and node must hash alike, and
        // a change here would move every key.
        assert_eq!(stable_hash(b"", 0), 0xf52a_15e9_a9b5_e89b);
        assert_eq!(stable_hash(b"10.0.0.1:80", 1), 0x9171_d507_4c44_5396);
        assert_ne!(stable_hash(b"a", 0), stable_hash(b"a", 1));
    }

    #[test]
    fn the_table_is_the_same_whatever_the_order_of_the_servers() {
        let names = servers(5);
        let mut reversed = names.clone();
        reversed.reverse();
        let a = table(&names);
        let b = table(&reversed);
        for key in 0..1000 {
            let key = format!("client-{key}");
            assert_eq!(
                names[a.lookup(key.as_bytes())],
                reversed[b.lookup(key.as_bytes())]
            );
        }
    }

    #[test]
    fn keys_spread_evenly() {
        let names = servers(4);
        let t = table(&names);
        let mut counts = [0usize; 4];
        for key in 0..40_000 {
            counts[t.lookup(format!("k{key}").as_bytes())] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn removing_a_server_moves_little_more_than_its_share() {
        let names = servers(10);
        let before = table(&names);
        let fewer: Vec<String> = names.iter().filter(|n| *n != &names[3]).cloned().collect();
        let after = table(&fewer);
        let keys = 20_000;
        let mut moved = 0;
        for key in 0..keys {
            let key = format!("user-{key}");
            let was = &names[before.lookup(key.as_bytes())];
            let now = &fewer[after.lookup(key.as_bytes())];
            if was != now {
                moved += 1;
            }
        }
        // Its own tenth must move; Maglev moves a little more, not much.
        let share = f64::from(moved) / f64::from(keys);
        assert!(share > 0.09 && share < 0.15, "{share}");
    }

    #[test]
    fn weights_take_more_slots() {
        let names = servers(2);
        let weighted: Vec<(&[u8], u32)> = vec![(names[0].as_bytes(), 3), (names[1].as_bytes(), 1)];
        let t = Maglev::new(&weighted).unwrap();
        let mut counts = [0usize; 2];
        for key in 0..40_000 {
            counts[t.lookup(format!("k{key}").as_bytes())] += 1;
        }
        let share = counts[0] as f64 / 40_000.0;
        assert!((share - 0.75).abs() < 0.03, "{counts:?}");
        assert!(Maglev::new(&[]).is_none());
    }
}
