//! A set of 802.1Q VLAN ids (1..=4094) as a fixed 512-byte bitmap.
//!
//! The planner unions and compares thousands of these (every core port carries every allocated
//! VLAN), so a bitmap beats a tree: union is 64 word ORs, equality is a memcmp. Printed and
//! parsed in the switch-CLI range form `10,100-105,200`.

use std::fmt;
use std::str::FromStr;

/// A VLAN id as the switch sees it.
pub type Vlan = u16;

/// The highest usable VLAN id (4095 is reserved).
pub const MAX_VLAN: Vlan = 4094;

const WORDS: usize = 64;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VlanSet([u64; WORDS]);

impl Default for VlanSet {
    fn default() -> Self {
        VlanSet([0; WORDS])
    }
}

impl VlanSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every usable VLAN (what an OVS trunk with an empty `trunks` column carries).
    pub fn all() -> Self {
        (1..=MAX_VLAN).collect()
    }

    /// Adds `v`; ids outside 1..=4094 are ignored (they cannot be configured on a switch).
    pub fn insert(&mut self, v: Vlan) {
        if (1..=MAX_VLAN).contains(&v) {
            self.0[usize::from(v) / 64] |= 1 << (v % 64);
        }
    }

    pub fn remove(&mut self, v: Vlan) {
        if usize::from(v) < WORDS * 64 {
            self.0[usize::from(v) / 64] &= !(1 << (v % 64));
        }
    }

    pub fn contains(&self, v: Vlan) -> bool {
        usize::from(v) < WORDS * 64 && self.0[usize::from(v) / 64] & (1 << (v % 64)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn union_with(&mut self, other: &VlanSet) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a |= *b;
        }
    }

    /// The VLANs in `self` but not in `other`.
    pub fn minus(&self, other: &VlanSet) -> VlanSet {
        let mut out = self.clone();
        for (a, b) in out.0.iter_mut().zip(other.0.iter()) {
            *a &= !*b;
        }
        out
    }

    /// True when every VLAN of `self` is in `other`.
    pub fn is_subset(&self, other: &VlanSet) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| a & !b == 0)
    }

    /// The ids in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = Vlan> + '_ {
        self.0.iter().enumerate().flat_map(|(i, w)| {
            let w = *w;
            (0..64u16).filter_map(move |b| (w & (1 << b) != 0).then_some(i as u16 * 64 + b))
        })
    }

    pub fn to_vec(&self) -> Vec<Vlan> {
        self.iter().collect()
    }
}

impl FromIterator<Vlan> for VlanSet {
    fn from_iter<I: IntoIterator<Item = Vlan>>(iter: I) -> Self {
        let mut s = VlanSet::new();
        for v in iter {
            s.insert(v);
        }
        s
    }
}

impl fmt::Display for VlanSet {
    /// `10,100-105,200`; the empty set prints as `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let v = self.to_vec();
        let mut first = true;
        let mut i = 0;
        while i < v.len() {
            let mut j = i;
            while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
                j += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if i == j {
                write!(f, "{}", v[i])?;
            } else {
                write!(f, "{}-{}", v[i], v[j])?;
            }
            i = j + 1;
        }
        Ok(())
    }
}

impl fmt::Debug for VlanSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VlanSet({self})")
    }
}

impl FromStr for VlanSet {
    type Err = String;
    /// Parses `10,100-105 200` (commas or spaces), `none` or the empty string.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = VlanSet::new();
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("none") {
            return Ok(out);
        }
        for part in s.split([',', ' ']).filter(|p| !p.is_empty()) {
            let num = |t: &str| {
                t.trim()
                    .parse::<Vlan>()
                    .ok()
                    .filter(|v| (1..=MAX_VLAN).contains(v))
                    .ok_or_else(|| format!("invalid VLAN {t:?} in {s:?}: expected 1..4094"))
            };
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if a > b {
                        return Err(format!("invalid VLAN range {part:?} in {s:?}"));
                    }
                    (a..=b).for_each(|v| out.insert(v));
                }
                None => out.insert(num(part)?),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_ranges_and_parses_them_back() {
        let s: VlanSet = [10, 100, 101, 102, 200, 4094].into_iter().collect();
        assert_eq!(s.to_string(), "10,100-102,200,4094");
        assert_eq!(s.to_string().parse::<VlanSet>().unwrap(), s);
        assert_eq!("".parse::<VlanSet>().unwrap(), VlanSet::new());
        assert_eq!(VlanSet::new().to_string(), "none");
        assert_eq!(VlanSet::all().len(), 4094);
    }

    #[test]
    fn out_of_range_ids_are_rejected_or_ignored() {
        assert!("0".parse::<VlanSet>().is_err());
        assert!("4095".parse::<VlanSet>().is_err());
        assert!("5-3".parse::<VlanSet>().is_err());
        let mut s = VlanSet::new();
        s.insert(4095);
        s.insert(0);
        assert!(s.is_empty());
    }

    #[test]
    fn set_algebra() {
        let a: VlanSet = [1, 2, 3].into_iter().collect();
        let b: VlanSet = [2, 3].into_iter().collect();
        assert!(b.is_subset(&a) && !a.is_subset(&b));
        assert_eq!(a.minus(&b).to_vec(), vec![1]);
        let mut c = b.clone();
        c.union_with(&"70".parse().unwrap());
        assert_eq!(c.to_vec(), vec![2, 3, 70]);
    }
}
