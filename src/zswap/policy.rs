//! The cache's tunables, the kernel's module parameters: the pool cap, the
//! percent settings, and the switches. [`Policy`] owns their values and
//! their range checks, so that a value is checked in one place whoever sets
//! it (a `Config`, a setter, the Python binding); each is an atomic, read
//! on every store without a lock, and changed at any time.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use super::Config;
use crate::error::{Error, Result};

/// The settings given as a percent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Percent {
    /// The pool cap as a percent of physical RAM, 1..=100 (the kernel's
    /// default is 20); in force only while no absolute cap is set.
    MaxPool,
    /// The percent of the pool cap, 0..=100, that a full pool must shrink
    /// to before stores are taken again (the kernel's default is 90; 0:
    /// only once the pool is empty).
    AcceptThreshold,
    /// The largest compressed size taken, as a percent of a page, 1..=100
    /// (the 2013 patch set's default is 80).
    MaxCompressionRatio,
}

impl Percent {
    /// The name of the setting, as `Config` and the Python API spell it.
    pub fn name(self) -> &'static str {
        match self {
            Percent::MaxPool => "max_pool_percent",
            Percent::AcceptThreshold => "accept_threshold_percent",
            Percent::MaxCompressionRatio => "max_compression_ratio",
        }
    }

    /// The lowest value allowed; the highest is 100.
    pub fn min(self) -> u32 {
        match self {
            Percent::AcceptThreshold => 0,
            Percent::MaxPool | Percent::MaxCompressionRatio => 1,
        }
    }

    /// `value` if it is in range, else a [`Config`](crate::ErrorKind::Config)
    /// error naming the setting and its range.
    pub fn check(self, value: u32) -> Result<u32> {
        if (self.min()..=100).contains(&value) {
            Ok(value)
        } else {
            Err(self.out_of_range(value))
        }
    }

    /// The error for a value out of range, whatever its type: a caller
    /// holding an integer too wide for `u32` reports it the same way.
    pub fn out_of_range(self, value: impl fmt::Display) -> Error {
        Error::config(format!(
            "{} must be in {}..=100, got {value}",
            self.name(),
            self.min()
        ))
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// An on/off setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Switch {
    /// Keep pages of one repeated word as just the word.
    SameFilled,
    /// `load` also drops the entry it serves, as kernel >= 6.5 can.
    ExclusiveLoads,
    /// New stores are taken (off: passed to the backing store, else
    /// refused); loads work either way.
    Enabled,
    /// A page that compresses poorly is kept in the pool as it is, as
    /// kernel >= 6.18 does, instead of being refused.
    StoreIncompressible,
}

/// What the cache is set to do, each value always in range.
#[derive(Debug)]
pub(super) struct Policy {
    /// `u64::MAX`: no absolute cap, use [`Percent::MaxPool`].
    max_pool_bytes: AtomicU64,
    percents: [AtomicU32; 3],
    switches: [AtomicBool; 4],
    physical_ram: u64,
}

impl Policy {
    /// The settings of `config`, checked; `physical_ram` in bytes is the
    /// basis of [`Percent::MaxPool`].
    pub(super) fn new(config: &Config, physical_ram: u64) -> Result<Policy> {
        let p = Policy {
            max_pool_bytes: AtomicU64::new(u64::MAX),
            percents: [
                AtomicU32::new(Percent::MaxPool.check(config.max_pool_percent)?),
                AtomicU32::new(Percent::AcceptThreshold.check(config.accept_threshold_percent)?),
                AtomicU32::new(Percent::MaxCompressionRatio.check(config.max_compression_ratio)?),
            ],
            switches: [
                AtomicBool::new(config.same_filled),
                AtomicBool::new(config.exclusive_loads),
                AtomicBool::new(true),
                // `None` is for the maker of the cache to settle (a region
                // of its own turns it on); a plain cache leaves it off.
                AtomicBool::new(config.store_incompressible.unwrap_or(false)),
            ],
            physical_ram,
        };
        p.set_max_pool_bytes(config.max_pool_bytes)?;
        Ok(p)
    }

    pub(super) fn percent(&self, which: Percent) -> u32 {
        self.percents[which.index()].load(Relaxed)
    }

    pub(super) fn set_percent(&self, which: Percent, value: u32) -> Result<()> {
        let v = which.check(value)?;
        self.percents[which.index()].store(v, Relaxed);
        Ok(())
    }

    pub(super) fn switch(&self, which: Switch) -> bool {
        self.switches[which as usize].load(Relaxed)
    }

    pub(super) fn set_switch(&self, which: Switch, on: bool) {
        self.switches[which as usize].store(on, Relaxed);
    }

    /// The absolute cap, if one is set.
    pub(super) fn max_pool_bytes(&self) -> Option<u64> {
        match self.max_pool_bytes.load(Relaxed) {
            u64::MAX => None,
            bytes => Some(bytes),
        }
    }

    /// Set or clear (`None`) the absolute cap: positive, below `u64::MAX`.
    pub(super) fn set_max_pool_bytes(&self, bytes: Option<u64>) -> Result<()> {
        match bytes {
            Some(0) => Err(Error::config("max_pool_bytes must be positive")),
            Some(u64::MAX) => Err(Error::config("max_pool_bytes is too large")),
            b => {
                self.max_pool_bytes.store(b.unwrap_or(u64::MAX), Relaxed);
                Ok(())
            }
        }
    }

    /// The pool cap in bytes now in force (absolute, or percent of RAM).
    pub(super) fn pool_limit(&self) -> u64 {
        self.max_pool_bytes()
            .unwrap_or_else(|| self.physical_ram / 100 * u64::from(self.percent(Percent::MaxPool)))
    }

    /// The size a full pool must shrink to before it takes stores again.
    pub(super) fn accept_bytes(&self, limit: u64) -> u64 {
        limit / 100 * u64::from(self.percent(Percent::AcceptThreshold))
    }

    /// The longest compressed page taken, in bytes, for pages of `page_size`.
    pub(super) fn max_compressed_len(&self, page_size: usize) -> usize {
        page_size * self.percent(Percent::MaxCompressionRatio) as usize / 100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percents_are_checked_by_kind() {
        let p = Policy::new(&Config::default(), 1 << 30).unwrap();
        for which in [Percent::MaxPool, Percent::MaxCompressionRatio] {
            let e = p.set_percent(which, 0).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Config);
            assert!(e.to_string().contains("1..=100, got 0"), "{e}");
        }
        p.set_percent(Percent::AcceptThreshold, 0).unwrap();
        let e = p.set_percent(Percent::AcceptThreshold, 101).unwrap_err();
        assert_eq!(
            e.to_string(),
            "accept_threshold_percent must be in 0..=100, got 101"
        );
        // A refused value leaves the old one.
        assert_eq!(p.percent(Percent::MaxPool), 20);
        p.set_percent(Percent::MaxPool, 50).unwrap();
        assert_eq!(p.pool_limit(), (1 << 30) / 100 * 50);
    }

    #[test]
    fn an_absolute_cap_wins_and_is_checked() {
        let p = Policy::new(&Config::default(), 1 << 30).unwrap();
        for bad in [0, u64::MAX] {
            let e = p.set_max_pool_bytes(Some(bad)).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Config);
        }
        p.set_max_pool_bytes(Some(4096)).unwrap();
        assert_eq!((p.pool_limit(), p.accept_bytes(4096)), (4096, 3600));
        p.set_max_pool_bytes(None).unwrap();
        assert_eq!(p.pool_limit(), (1 << 30) / 100 * 20);
        let config = Config {
            max_pool_bytes: Some(u64::MAX),
            ..Config::default()
        };
        assert!(Policy::new(&config, 1 << 30).is_err());
    }
}
