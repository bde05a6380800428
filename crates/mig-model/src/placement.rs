//! Where GPU instances sit in a GPU's memory slots, and what still fits.
//!
//! A GPU has `memory_slots` slots (8; 4 on A30; 12 on RTX PRO 6000, whose
//! quarter slices span 3 slots each) and `compute_slices` SM slices (7, or 4). A GPU instance occupies the slots
//! `[start, start + size)` of one of its profile's placements and the profile's
//! SM slices. Two instances may not share a slot, the SM slices may not exceed
//! the budget, and a profile may not exceed its own instance count.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::product::ProductSpec;
use crate::profile::GiProfile;

/// A start slot and a size, as NVML's `nvmlGpuInstancePlacement_t` and
/// nvidia-smi's `Start:Size` column give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Placement {
    pub start: u32,
    pub size: u32,
}

impl Placement {
    pub const fn new(start: u32, size: u32) -> Self {
        Placement { start, size }
    }

    pub fn end(self) -> u32 {
        self.start + self.size
    }

    pub fn overlaps(self, other: Placement) -> bool {
        self.start < other.end() && other.start < self.end()
    }

    /// Bit `i` set for every slot `i` the placement covers.
    pub fn slot_mask(self) -> u32 {
        ((1u32 << self.size) - 1) << self.start
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.start, self.size)
    }
}

/// The GPU-instance id the driver gives an instance at `placement`.
///
/// The driver numbers placements as the nodes of a binary tree over the memory
/// slots: the whole GPU is 0, the halves 1–2, the quarters 3–6, the eighths
/// 7–14. This is why NVIDIA's examples show a `1g.5gb` at `6:1` as GI 13 and a
/// `2g.10gb` at `4:2` as GI 5.
pub fn gpu_instance_id(placement: Placement, memory_slots: u32) -> u32 {
    memory_slots / placement.size - 1 + placement.start / placement.size
}

/// What the existing GPU instances of one GPU occupy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Occupancy {
    pub slot_mask: u32,
    pub compute_slices: u32,
}

impl Occupancy {
    pub fn add(&mut self, profile: &GiProfile, placement: Placement) {
        self.slot_mask |= placement.slot_mask();
        self.compute_slices += profile.compute_slices;
    }

    pub fn memory_slots_used(self) -> u32 {
        self.slot_mask.count_ones()
    }
}

/// Why a GPU instance cannot be created where asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The placement is not one of the profile's placements.
    NotAPlacement,
    /// The placement is legal but overlaps an existing instance.
    Collides,
    /// Not enough SM slices left.
    ComputeBudget,
    /// The profile's instance count is reached.
    ProfileCount,
}

/// The placement engine over one GPU's existing instances.
pub struct Placer<'a> {
    spec: &'a ProductSpec,
    occupied: Occupancy,
    /// Existing instances per profile id.
    counts: Vec<(u32, u32)>,
}

impl<'a> Placer<'a> {
    /// `existing` lists each GPU instance's profile and placement.
    pub fn new(
        spec: &'a ProductSpec,
        existing: impl IntoIterator<Item = (&'a GiProfile, Placement)>,
    ) -> Self {
        let mut occupied = Occupancy::default();
        let mut counts: Vec<(u32, u32)> = Vec::new();
        for (profile, placement) in existing {
            occupied.add(profile, placement);
            match counts.iter_mut().find(|(id, _)| *id == profile.id) {
                Some((_, n)) => *n += 1,
                None => counts.push((profile.id, 1)),
            }
        }
        Placer {
            spec,
            occupied,
            counts,
        }
    }

    pub fn occupancy(&self) -> Occupancy {
        self.occupied
    }

    fn count_of(&self, profile: &GiProfile) -> u32 {
        self.counts
            .iter()
            .find(|(id, _)| *id == profile.id)
            .map_or(0, |(_, n)| *n)
    }

    /// Whether an instance of `profile` may be created at `placement` now.
    pub fn check(&self, profile: &GiProfile, placement: Placement) -> Result<(), Refusal> {
        if placement.size != profile.memory_slices || !profile.placement_starts.contains(&placement.start) {
            return Err(Refusal::NotAPlacement);
        }
        if self.count_of(profile) >= profile.max_instances {
            return Err(Refusal::ProfileCount);
        }
        if self.occupied.compute_slices + profile.compute_slices > self.spec.compute_slices {
            return Err(Refusal::ComputeBudget);
        }
        if self.occupied.slot_mask & placement.slot_mask() != 0 {
            return Err(Refusal::Collides);
        }
        Ok(())
    }

    /// Every placement where `profile` could be created now, lowest start first.
    pub fn free_placements(&self, profile: &GiProfile) -> Vec<Placement> {
        profile
            .placement_starts
            .iter()
            .map(|&start| Placement::new(start, profile.memory_slices))
            .filter(|p| self.check(profile, *p).is_ok())
            .collect()
    }

    /// Where the driver puts the next instance of `profile` when no placement
    /// is given: the free placement that leaves the most instances of every
    /// profile creatable afterwards, the lowest start on a tie. This keeps
    /// large profiles possible, and reproduces every published sequence we
    /// know: `-cgi 19,14,5` on an empty A100 gives 6:1, 4:2, 0:4;
    /// `-cgi 9,19,14,19` gives 4:4, 0:1, 2:2, 1:1; a lone `1g` on an A30 or
    /// RTX PRO 6000 starts at 0.
    pub fn next_placement(&self, profile: &GiProfile) -> Option<Placement> {
        let mut best: Option<(u32, Placement)> = None;
        for placement in self.free_placements(profile) {
            let after = self.with(profile, placement);
            let room: u32 = self
                .spec
                .profiles
                .iter()
                .map(|p| after.remaining_capacity(p))
                .sum();
            if best.is_none_or(|(most, _)| room > most) {
                best = Some((room, placement));
            }
        }
        best.map(|(_, placement)| placement)
    }

    /// This placer with one more instance of `profile` at `placement`.
    fn with(&self, profile: &GiProfile, placement: Placement) -> Placer<'a> {
        let mut next = Placer {
            spec: self.spec,
            occupied: self.occupied,
            counts: self.counts.clone(),
        };
        next.occupied.add(profile, placement);
        match next.counts.iter_mut().find(|(id, _)| *id == profile.id) {
            Some((_, n)) => *n += 1,
            None => next.counts.push((profile.id, 1)),
        }
        next
    }

    /// How many more instances of `profile` could be created from here, the
    /// meaning of `nvmlDeviceGetGpuInstanceRemainingCapacity`.
    ///
    /// A profile's own placements never overlap each other, so every free one
    /// can be taken; the SM budget and the instance count cap the total.
    pub fn remaining_capacity(&self, profile: &GiProfile) -> u32 {
        let free_slots = profile
            .placement_starts
            .iter()
            .map(|&start| Placement::new(start, profile.memory_slices))
            .filter(|p| self.occupied.slot_mask & p.slot_mask() == 0)
            .count() as u32;
        let by_compute = (self.spec.compute_slices - self.occupied.compute_slices) / profile.compute_slices;
        let by_count = profile.max_instances.saturating_sub(self.count_of(profile));
        free_slots.min(by_compute).min(by_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::product::Product;

    #[test]
    fn gi_ids_follow_the_slot_tree() {
        assert_eq!(gpu_instance_id(Placement::new(0, 8), 8), 0);
        assert_eq!(gpu_instance_id(Placement::new(0, 4), 8), 1);
        assert_eq!(gpu_instance_id(Placement::new(4, 4), 8), 2);
        assert_eq!(gpu_instance_id(Placement::new(4, 2), 8), 5);
        assert_eq!(gpu_instance_id(Placement::new(6, 1), 8), 13);
        assert_eq!(gpu_instance_id(Placement::new(3, 1), 4), 6);
    }

    #[test]
    fn empty_h100_matches_the_real_remaining_capacity() {
        // nvml_mig_probe.txt: remaining capacity on an empty H100 80GB HBM3.
        let product = Product::H100_80GB;
        let placer = Placer::new(product.spec(), []);
        for (id, expected) in [(19, 7), (14, 3), (9, 2), (5, 1), (0, 1), (20, 1), (15, 4)] {
            let profile = product.profile_by_id(id).unwrap();
            assert_eq!(placer.remaining_capacity(profile), expected, "profile {id}");
        }
    }

    #[test]
    fn collisions_and_budget_are_refused() {
        let product = Product::H100_80GB;
        let p3g = product.profile_by_id(9).unwrap();
        let p1g = product.profile_by_id(19).unwrap();
        let p4g = product.profile_by_id(5).unwrap();
        let placer = Placer::new(product.spec(), [(p3g, Placement::new(4, 4))]);
        assert_eq!(placer.check(p3g, Placement::new(4, 4)), Err(Refusal::Collides));
        assert_eq!(
            placer.check(p3g, Placement::new(2, 4)),
            Err(Refusal::NotAPlacement)
        );
        assert_eq!(placer.check(p1g, Placement::new(5, 1)), Err(Refusal::Collides));
        // Every 1g kills the 4g and one 2g either way: the lowest start wins the tie.
        assert_eq!(placer.next_placement(p1g), Some(Placement::new(0, 1)));
        assert_eq!(placer.remaining_capacity(p1g), 4);
        // 4g + 3g uses all 7 SM slices: nothing else fits even where slots are free.
        let empty = Placer::new(product.spec(), []);
        assert_eq!(
            empty.next_placement(p1g),
            Some(Placement::new(6, 1)),
            "keeps 0:4 for a 4g"
        );
        let full = Placer::new(
            product.spec(),
            [(p3g, Placement::new(4, 4)), (p4g, Placement::new(0, 4))],
        );
        assert_eq!(full.remaining_capacity(p1g), 0);
        let placer = Placer::new(
            product.spec(),
            (0..7).map(|s| (p1g, Placement::new(s, 1))).collect::<Vec<_>>(),
        );
        // Slot 7 is free but 7 SM slices are used.
        let p1g20 = product.profile_by_id(15).unwrap();
        assert_eq!(
            placer.check(p1g20, Placement::new(6, 2)),
            Err(Refusal::ComputeBudget)
        );
    }
}
