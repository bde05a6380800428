//! Fragmentation of a MIG GPU, derived from its snapshot alone: which free
//! memory slots no GPU instance that can be created now could occupy, and
//! how large the largest instance that can be created now is.
//!
//! Two NVML facts, and nothing else, define it:
//! * `nvmlDeviceGetGpuInstancePossiblePlacements_v2` (nvml.h, API 13) returns
//!   "all the possible placements for the given profile"; "a created GPU
//!   instance occupies memory slices described by its placement. Creation of
//!   new GPU instance will fail if there is overlap with the already
//!   occupied memory slices." A profile's placement starts are
//!   [`ProfileCapacity::placement_starts`], each spanning its `memory_slices`;
//!   the occupied slots are the existing GPU instances' placements.
//! * `nvmlDeviceGetGpuInstanceRemainingCapacity` (nvml.h) "returns remaining
//!   instance count for the profile ID" ([`ProfileCapacity::remaining_instances`]):
//!   0 where no instance of the profile can be created, whatever the reason
//!   (no free placement, the SM slices used up, the profile's instance cap).
//!
//! A placement is *creatable* when its profile's remaining count is above 0
//! and it overlaps no occupied slot. A free slot is *unplaceable* when no
//! creatable placement of any profile covers it: memory that stays idle until
//! an instance is destroyed, however the scheduler asks.

use super::{GpuSnapshot, ProfileCapacity};

/// The slots `[start, start + size)` as a bit mask, or `None` past 64 slots.
fn slots(start: u32, size: u32) -> Option<u64> {
    let end = start.checked_add(size)?;
    if end > 64 {
        return None;
    }
    let width = if size == 64 { u64::MAX } else { (1u64 << size) - 1 };
    Some(width << start)
}

impl GpuSnapshot {
    /// The memory slots GPU instances hold, as a bit mask; `None` where a
    /// placement lies past 64 slots (no GPU has that many).
    fn occupied_memory_slots(&self) -> Option<u64> {
        self.gpu_instances.iter().try_fold(0u64, |mask, gi| {
            Some(mask | slots(gi.placement_start, gi.placement_size)?)
        })
    }

    /// Profiles of which NVML says one more instance can be created now.
    fn creatable_profiles(&self) -> impl Iterator<Item = &ProfileCapacity> {
        self.profiles.iter().filter(|p| p.remaining_instances > 0)
    }

    /// Free memory slots that no creatable placement of any profile covers.
    /// `None` when MIG is not in force, or when the snapshot cannot tell: a
    /// creatable profile without placements (a source that did not read
    /// them), or slots past 64.
    pub fn memory_slices_unplaceable(&self) -> Option<u32> {
        if !self.mig_current {
            return None;
        }
        let capacity = slots(0, self.memory_slices_capacity)?;
        let occupied = self.occupied_memory_slots()?;
        let mut coverable = 0u64;
        for p in self.creatable_profiles() {
            if p.placement_starts.is_empty() {
                return None;
            }
            for &start in &p.placement_starts {
                let Some(placement) = slots(start, p.memory_slices) else {
                    continue;
                };
                if placement & !capacity == 0 && placement & occupied == 0 {
                    coverable |= placement;
                }
            }
        }
        Some((capacity & !occupied & !coverable).count_ones())
    }

    /// The memory and SM slices of the largest profiles of which one more
    /// instance can be created now (each the largest on its own: the
    /// profile with most memory slots need not be the one with most SM
    /// slices); `(0, 0)` when none can. `None` when MIG is not in force.
    pub fn largest_creatable_profile_slices(&self) -> Option<(u32, u32)> {
        if !self.mig_current {
            return None;
        }
        Some(self.creatable_profiles().fold((0, 0), |(memory, compute), p| {
            (memory.max(p.memory_slices), compute.max(p.compute_slices))
        }))
    }
}

#[cfg(test)]
mod tests {
    use mig_model::{Product, World};

    use super::*;
    use crate::source::sim;

    /// One H100 80GB in MIG mode with GPU instances of these profile ids at
    /// these memory slots, as the simulator reads it (its remaining capacity
    /// is checked against a real H100's in mig-model's placement tests).
    fn h100(instances: &[(u32, u32)]) -> GpuSnapshot {
        let mut world = World::new("node", Product::H100_80GB, 1);
        let gpu = world.gpu_mut(0).unwrap();
        gpu.set_mig_mode(true);
        for &(profile, start) in instances {
            gpu.create_gpu_instance(profile, Some(start)).unwrap();
        }
        sim::reading_from_world(&world).gpus.remove(0)
    }

    // H100 80GB profile ids (nvidia-smi mig -lgip): 19 1g.10gb (slots 0-6),
    // 15 1g.20gb (starts 0, 2, 4, 6; 2 slots), 14 2g.20gb (0, 2, 4; 2 slots),
    // 9 3g.40gb (0, 4; 4 slots), 5 4g.40gb (0; 4 slots), 0 7g.80gb (0; 8 slots).

    #[test]
    fn an_empty_gpu_has_nothing_unplaceable_and_the_whole_gpu_creatable() {
        let g = h100(&[]);
        assert_eq!(g.memory_slices_unplaceable(), Some(0));
        assert_eq!(g.largest_creatable_profile_slices(), Some((8, 7)));
    }

    #[test]
    fn a_4g_at_0_and_a_1g_at_6_strand_slot_7() {
        // Free: slots 4, 5, 7 and 2 SM slices. 1g.10gb fits at 4 or 5,
        // 1g.20gb and 2g.20gb at 4-5; slot 7 is reachable only by a 1g.20gb
        // at 6-7 or a 3g.40gb at 4-7, both over the 1g at 6.
        let g = h100(&[(5, 0), (19, 6)]);
        assert_eq!((g.memory_slices_capacity - g.memory_slices_used), 3);
        assert_eq!(g.memory_slices_unplaceable(), Some(1));
        assert_eq!(g.largest_creatable_profile_slices(), Some((2, 2)));
    }

    #[test]
    fn three_scattered_1g_leave_four_sm_slices_but_only_1g_creatable() {
        // 1g at 0, 2, 4: every 2g.20gb and 3g.40gb start is hit. Free slots
        // 1, 3, 5 take a 1g.10gb each, 6-7 a 1g.20gb: nothing unplaceable,
        // yet 4 free SM slices take only 1-slice instances.
        let g = h100(&[(19, 0), (19, 2), (19, 4)]);
        assert_eq!(g.compute_slices_capacity - g.compute_slices_used, 4);
        assert_eq!(g.memory_slices_unplaceable(), Some(0));
        assert_eq!(g.largest_creatable_profile_slices(), Some((2, 1)));
    }

    #[test]
    fn seven_1g_leave_slot_7_free_and_unplaceable_with_nothing_creatable() {
        let g = h100(&(0..7).map(|s| (19, s)).collect::<Vec<_>>());
        assert_eq!(g.memory_slices_used, 7);
        assert_eq!(g.memory_slices_unplaceable(), Some(1));
        assert_eq!(g.largest_creatable_profile_slices(), Some((0, 0)));
    }

    #[test]
    fn a_free_placement_of_a_profile_nvml_says_is_exhausted_covers_nothing() {
        // 4g at 0 and 2g at 4 use 6 of 7 SM slices: slots 6-7 are free. The
        // 1g.20gb at 6-7 needs 1 SM slice, so it covers both.
        let mut g = h100(&[(5, 0), (14, 4)]);
        assert_eq!(g.memory_slices_unplaceable(), Some(0));
        assert_eq!(g.largest_creatable_profile_slices(), Some((2, 1)));
        // Were NVML to say no 1g.20gb can be created (remaining 0), slot 7
        // would be reachable by nothing else.
        for p in g.profiles.iter_mut().filter(|p| p.id == 15) {
            p.remaining_instances = 0;
        }
        assert_eq!(g.memory_slices_unplaceable(), Some(1));
        assert_eq!(g.largest_creatable_profile_slices(), Some((1, 1)));
    }

    #[test]
    fn unknown_placements_or_mig_off_give_no_value() {
        let mut g = h100(&[(19, 0)]);
        for p in &mut g.profiles {
            p.placement_starts.clear();
        }
        assert_eq!(g.memory_slices_unplaceable(), None);
        let mut off = h100(&[]);
        off.mig_current = false;
        assert_eq!(off.memory_slices_unplaceable(), None);
        assert_eq!(off.largest_creatable_profile_slices(), None);
    }

    #[test]
    fn slot_masks_refuse_what_does_not_fit_64_slots() {
        assert_eq!(slots(0, 8), Some(0xff));
        assert_eq!(slots(6, 2), Some(0xc0));
        assert_eq!(slots(0, 64), Some(u64::MAX));
        assert_eq!(slots(60, 8), None);
        assert_eq!(slots(u32::MAX, 2), None);
    }
}
