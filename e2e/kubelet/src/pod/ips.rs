//! Pod IPs: each running pod gets its own loopback address from a range.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An inclusive range of IPv4 addresses, written `127.0.0.2-127.0.0.250`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl IpRange {
    /// How many addresses (never 0: the first is at most the last).
    pub fn size(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.first)..=u32::from(self.last)).contains(&u32::from(ip))
    }
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (first, last) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?}: write the range as FIRST-LAST"))?;
        let parse = |part: &str| {
            part.trim()
                .parse::<Ipv4Addr>()
                .map_err(|e| format!("{part:?} in {text:?}: {e}"))
        };
        let (first, last) = (parse(first)?, parse(last)?);
        if first > last {
            return Err(format!("{text:?}: the first address is after the last"));
        }
        if !first.is_loopback() || !last.is_loopback() {
            return Err(format!(
                "{text:?}: pod IPs must be loopback addresses (127.x.y.z)"
            ));
        }
        Ok(Self { first, last })
    }
}

/// The addresses in use.
#[derive(Debug)]
pub struct IpPool {
    range: IpRange,
    used: BTreeSet<Ipv4Addr>,
}

impl IpPool {
    pub fn new(range: IpRange) -> Self {
        Self {
            range,
            used: BTreeSet::new(),
        }
    }

    /// `preferred` when it is in the range and free (a pod keeps the IP its
    /// status shows across kubelet restarts), else the lowest free address.
    pub fn allocate(&mut self, preferred: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        let ip = preferred
            .filter(|ip| self.range.contains(*ip) && !self.used.contains(ip))
            .or_else(|| {
                (u32::from(self.range.first)..=u32::from(self.range.last))
                    .map(Ipv4Addr::from)
                    .find(|ip| !self.used.contains(ip))
            })?;
        self.used.insert(ip);
        Some(ip)
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_rejects_bad_ones() {
        let range: IpRange = "127.0.0.2-127.0.0.250".parse().expect("valid");
        assert_eq!(range.size(), 249);
        assert!("127.0.0.9-127.0.0.2".parse::<IpRange>().is_err());
        assert!("10.0.0.1-10.0.0.9".parse::<IpRange>().is_err());
        assert!("127.0.0.1".parse::<IpRange>().is_err());
    }

    #[test]
    fn allocates_lowest_free_or_preferred_and_reuses_released() {
        let mut pool = IpPool::new("127.0.0.2-127.0.0.4".parse().expect("valid"));
        let a = pool.allocate(None).expect("free");
        assert_eq!(a, Ipv4Addr::new(127, 0, 0, 2));
        let c = pool
            .allocate(Some(Ipv4Addr::new(127, 0, 0, 4)))
            .expect("free");
        assert_eq!(c, Ipv4Addr::new(127, 0, 0, 4));
        // Taken or out of range: the lowest free one instead.
        assert_eq!(pool.allocate(Some(a)), Some(Ipv4Addr::new(127, 0, 0, 3)));
        assert_eq!(pool.allocate(None), None);
        pool.release(a);
        assert_eq!(pool.allocate(Some(Ipv4Addr::new(127, 0, 0, 99))), Some(a));
    }
}
