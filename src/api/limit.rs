//! Request-rate limits (HAAS-API.md §3.2 layer 1): a token bucket per customer for mutating
//! calls and one for reads, and buckets per source address and per key id that only failed
//! authentications drain. Over the limit the call gets fault 710 with a retry hint; nothing
//! queues at this layer.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets not touched for this long are full again and can be forgotten.
const FORGET_AFTER_SECS: f64 = 600.0;
/// Above this many buckets, stale ones are dropped on the next insert.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A set of token buckets, one per key, each refilling at `rate` tokens per second up to `burst`.
pub struct Buckets<K> {
    rate: f64,
    burst: f64,
    map: Mutex<HashMap<K, Bucket>>,
}

impl<K: Eq + Hash + Clone> Buckets<K> {
    pub fn new(rate_per_second: f64, burst: u32) -> Self {
        Buckets {
            rate: rate_per_second.max(f64::MIN_POSITIVE),
            burst: f64::from(burst.max(1)),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn with<R>(&self, key: &K, f: impl FnOnce(&mut Bucket, f64, f64) -> R) -> R {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > SWEEP_ABOVE {
            map.retain(|_, b| now.duration_since(b.at).as_secs_f64() < FORGET_AFTER_SECS);
        }
        let bucket = map.entry(key.clone()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.at = now;
        f(bucket, self.rate, self.burst)
    }

    /// Takes one token, or says how many whole seconds until one is available.
    pub fn take(&self, key: &K) -> Result<(), u64> {
        self.with(key, |b, rate, _| {
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                Ok(())
            } else {
                Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
            }
        })
    }

    /// Whether a token is available, without taking it (retry hint if not).
    pub fn check(&self, key: &K) -> Result<(), u64> {
        self.with(key, |b, rate, _| {
            if b.tokens >= 1.0 {
                Ok(())
            } else {
                Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_gives_a_retry_hint() {
        let b = Buckets::new(2.0, 3);
        for _ in 0..3 {
            assert_eq!(b.take(&1), Ok(()));
        }
        assert_eq!(b.take(&1), Err(1));
        assert_eq!(b.take(&2), Ok(()), "each key has its own bucket");
    }

    #[test]
    fn check_does_not_consume() {
        let b = Buckets::new(1.0, 1);
        assert_eq!(b.check(&"ip"), Ok(()));
        assert_eq!(b.check(&"ip"), Ok(()));
        assert_eq!(b.take(&"ip"), Ok(()));
        assert!(b.check(&"ip").is_err());
    }
}
