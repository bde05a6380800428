//! Property tests of the MIG lifecycle and the placement engine.
//!
//! Every property is generic over the product and runs, in every case, for each
//! product whose profile table is filled (`Product::ALL` with non-empty
//! `spec().profiles`), so nothing here hard-codes a product's table.
//!
//! 1. Random operation sequences keep every budget and shape invariant,
//!    `World::validate` holds after each step, and a refused operation leaves
//!    the World exactly as it was.
//! 2. `Placer::remaining_capacity` equals a brute-force search that only
//!    creates instances at explicit placements on clones of the GPU.
//! 3. `Placer::next_placement` is the free placement that leaves the most room, a
//!    create there succeeds, and a create without placement succeeds iff the
//!    remaining capacity is positive (and lands on `next_placement`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mig_model::placement::gpu_instance_id;
use mig_model::{Gpu, MigError, ModeChange, Placement, Product, World};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

/// The products whose profile tables are filled.
fn products() -> Vec<Product> {
    let filled: Vec<Product> = Product::ALL
        .into_iter()
        .filter(|p| !p.spec().profiles.is_empty())
        .collect();
    assert!(
        filled.contains(&Product::H100_80GB),
        "the H100 table must be filled"
    );
    filled
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Keep the source tree untouched on failure; the failing case is printed.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Operation model
// ---------------------------------------------------------------------------

/// A GPU-instance profile: an index into the product's table (taken modulo its
/// length, so the same value works for every product) or a raw, possibly
/// unknown, profile id.
#[derive(Debug, Clone, Copy)]
enum ProfileSel {
    Table(usize),
    Raw(u32),
}

impl ProfileSel {
    fn id(self, product: Product) -> u32 {
        let profiles = product.spec().profiles;
        match self {
            ProfileSel::Table(i) => profiles[i % profiles.len()].id,
            ProfileSel::Raw(id) => id,
        }
    }
}

/// An existing instance (index modulo the current count) or a raw id.
#[derive(Debug, Clone, Copy)]
enum IdSel {
    Existing(usize),
    Raw(u32),
}

impl IdSel {
    fn pick(self, existing: &[u32]) -> u32 {
        match self {
            IdSel::Existing(i) if !existing.is_empty() => existing[i % existing.len()],
            IdSel::Existing(i) => i as u32,
            IdSel::Raw(id) => id,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    SetMig(bool),
    CreateGi {
        gpu: u32,
        profile: ProfileSel,
        start: StartSel,
    },
    CreateCi {
        gi: IdSel,
        profile: Option<u32>,
    },
    DestroyCi {
        gi: IdSel,
        ci: IdSel,
    },
    DestroyGi {
        gi: IdSel,
    },
    Reboot,
    SetClients(u32),
}

fn profile_sel() -> impl Strategy<Value = ProfileSel> {
    prop_oneof![
        9 => (0usize..64).prop_map(ProfileSel::Table),
        1 => prop_oneof![0u32..48, Just(u32::MAX)].prop_map(ProfileSel::Raw),
    ]
}

fn id_sel() -> impl Strategy<Value = IdSel> {
    prop_oneof![
        6 => (0usize..64).prop_map(IdSel::Existing),
        1 => prop_oneof![0u32..16, Just(u32::MAX)].prop_map(IdSel::Raw),
    ]
}

/// The placement of a GI create: the driver's choice, one of the profile's
/// listed starts (index modulo their count), or a raw start that may be
/// illegal or past the memory slots.
#[derive(Debug, Clone, Copy)]
enum StartSel {
    Driver,
    Listed(usize),
    Raw(u32),
}

impl StartSel {
    fn start(self, product: Product, profile_id: u32) -> Option<u32> {
        match self {
            StartSel::Driver => None,
            StartSel::Listed(i) => match product.profile_by_id(profile_id) {
                Some(p) => Some(p.placement_starts[i % p.placement_starts.len()]),
                None => Some(i as u32),
            },
            StartSel::Raw(s) => Some(s),
        }
    }
}

fn start_sel() -> impl Strategy<Value = StartSel> {
    prop_oneof![
        4 => Just(StartSel::Driver),
        4 => (0usize..64).prop_map(StartSel::Listed),
        2 => prop_oneof![4 => 0u32..10, 1 => Just(u32::MAX), 1 => 10u32..40].prop_map(StartSel::Raw),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop::bool::weighted(0.85).prop_map(Op::SetMig),
        10 => (prop_oneof![9 => Just(0u32), 1 => Just(1u32)], profile_sel(), start_sel())
            .prop_map(|(gpu, profile, start)| Op::CreateGi { gpu, profile, start }),
        6 => (id_sel(), prop_oneof![1 => Just(None), 2 => (0u32..9).prop_map(Some)])
            .prop_map(|(gi, profile)| Op::CreateCi { gi, profile }),
        3 => (id_sel(), id_sel()).prop_map(|(gi, ci)| Op::DestroyCi { gi, ci }),
        3 => id_sel().prop_map(|gi| Op::DestroyGi { gi }),
        1 => Just(Op::Reboot),
        1 => prop_oneof![Just(0u32), 1u32..4].prop_map(Op::SetClients),
    ]
}

fn gi_ids(gpu: &Gpu) -> Vec<u32> {
    gpu.gpu_instances.iter().map(|g| g.id).collect()
}

/// Applies `op` to the only GPU of `world`; `Err` for a refused operation.
fn apply(world: &mut World, op: &Op) -> Result<(), MigError> {
    match *op {
        Op::SetMig(enabled) => {
            let gpu = world.gpu_mut(0)?;
            let before = gpu.clone();
            let change = gpu.set_mig_mode(enabled);
            match change {
                ModeChange::Unchanged => assert_eq!(*gpu, before, "Unchanged changed the GPU"),
                ModeChange::Applied => assert_eq!(gpu.mig.current, enabled),
                ModeChange::PendingReset => {
                    assert!(gpu.spec().architecture.mig_toggle_needs_reset() && gpu.clients > 0);
                    assert_eq!(gpu.mig.pending, enabled);
                    assert_eq!(gpu.gpu_instances, before.gpu_instances);
                }
            }
            Ok(())
        }
        Op::CreateGi { gpu, profile, start } => {
            let product = world.gpus[0].product;
            let profile_id = profile.id(product);
            let start = start.start(product, profile_id);
            let gpu = world.gpu_mut(gpu)?;
            let expected = product
                .profile_by_id(profile_id)
                .and_then(|p| gpu.placer().next_placement(p));
            let id = gpu.create_gpu_instance(profile_id, start)?;
            let gi = gpu.gpu_instance(id).expect("the new GI exists");
            assert_eq!(gi.profile_id, profile_id);
            assert!(gi.compute_instances.is_empty(), "-cgi alone creates no CI");
            match start {
                Some(s) => assert_eq!(gi.placement.start, s),
                None => assert_eq!(Some(gi.placement), expected, "driver's choice"),
            }
            Ok(())
        }
        Op::CreateCi { gi, profile } => {
            let gpu = world.gpu_mut(0)?;
            let gi = gi.pick(&gi_ids(gpu));
            let before = gpu.gpu_instance(gi).map(|g| g.compute_instances.len());
            let ci = gpu.create_compute_instance(gi, profile)?;
            let instance = gpu.gpu_instance(gi).expect("GI still exists");
            assert_eq!(Ok(instance.compute_instances.len()), before.map(|n| n + 1));
            let c = instance
                .compute_instances
                .iter()
                .find(|c| c.id == ci)
                .expect("the new CI exists");
            if let Some(p) = profile {
                assert_eq!(c.profile_id, p);
            }
            Ok(())
        }
        Op::DestroyCi { gi, ci } => {
            let gpu = world.gpu_mut(0)?;
            let gi = gi.pick(&gi_ids(gpu));
            let cis: Vec<u32> = gpu
                .gpu_instance(gi)
                .map(|g| g.compute_instances.iter().map(|c| c.id).collect())
                .unwrap_or_default();
            let ci = ci.pick(&cis);
            gpu.destroy_compute_instance(gi, ci)?;
            let left = gpu.gpu_instance(gi).expect("GI still exists");
            assert!(left.compute_instances.iter().all(|c| c.id != ci));
            assert_eq!(left.compute_instances.len() + 1, cis.len());
            Ok(())
        }
        Op::DestroyGi { gi } => {
            let gpu = world.gpu_mut(0)?;
            let gi = gi.pick(&gi_ids(gpu));
            gpu.destroy_gpu_instance(gi)?;
            assert!(gpu.gpu_instance(gi).is_err());
            Ok(())
        }
        Op::Reboot => {
            let before = world.clone();
            world.reboot();
            assert_ne!(world.boot_id, before.boot_id);
            for (gpu, old) in world.gpus.iter().zip(&before.gpus) {
                assert!(gpu.gpu_instances.is_empty() && gpu.clients == 0);
                // Ampere applies the pending mode; Hopper and newer come back without MIG.
                let mode = gpu.spec().architecture.mig_mode_survives_reboot() && old.mig.pending;
                assert_eq!((gpu.mig.current, gpu.mig.pending), (mode, mode));
            }
            Ok(())
        }
        Op::SetClients(n) => {
            world.gpu_mut(0)?.clients = n;
            Ok(())
        }
    }
}

/// The budget and shape invariants, checked independently of `validate`.
fn check_invariants(world: &World) -> Result<(), TestCaseError> {
    for gpu in &world.gpus {
        let spec = gpu.spec();
        if !gpu.mig.current {
            prop_assert!(gpu.gpu_instances.is_empty(), "GIs while MIG is disabled");
        }
        let mut compute = 0u32;
        let mut memory = 0u32;
        let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
        let mut ids = BTreeSet::new();
        let mut uuids = BTreeSet::new();
        for (i, gi) in gpu.gpu_instances.iter().enumerate() {
            let profile = gpu.product.profile_by_id(gi.profile_id);
            prop_assert!(profile.is_some(), "unknown profile {}", gi.profile_id);
            let profile = profile.unwrap();
            prop_assert_eq!(gi.placement.size, profile.memory_slices);
            prop_assert!(profile.placement_starts.contains(&gi.placement.start));
            prop_assert!(gi.placement.end() <= spec.memory_slots);
            prop_assert_eq!(gi.id, gpu_instance_id(gi.placement, spec.memory_slots));
            prop_assert!(ids.insert(gi.id), "duplicate GI id {}", gi.id);
            for other in &gpu.gpu_instances[i + 1..] {
                prop_assert!(
                    !gi.placement.overlaps(other.placement),
                    "GIs {} and {} overlap",
                    gi.id,
                    other.id
                );
            }
            compute += profile.compute_slices;
            memory += profile.memory_slices;
            *counts.entry(profile.id).or_default() += 1;

            let mut ci_slices = 0;
            let mut ci_ids = BTreeSet::new();
            for (j, ci) in gi.compute_instances.iter().enumerate() {
                prop_assert!(ci.placement.end() <= profile.compute_slices);
                prop_assert_eq!(ci.compute_slices(), ci.placement.size);
                prop_assert!(ci_ids.insert(ci.id), "duplicate CI id {}", ci.id);
                prop_assert!(uuids.insert(ci.uuid.clone()), "duplicate uuid {}", ci.uuid);
                for other in &gi.compute_instances[j + 1..] {
                    prop_assert!(
                        !ci.placement.overlaps(other.placement),
                        "CIs {} and {} of GI {} overlap",
                        ci.id,
                        other.id,
                        gi.id
                    );
                }
                ci_slices += ci.placement.size;
            }
            prop_assert!(ci_slices <= profile.compute_slices);
        }
        prop_assert!(compute <= spec.compute_slices, "compute {compute} > budget");
        prop_assert!(memory <= spec.memory_slots, "memory {memory} > budget");
        for (id, n) in counts {
            let max = gpu.product.profile_by_id(id).unwrap().max_instances;
            prop_assert!(n <= max, "{n} instances of profile {id}, max {max}");
        }
        prop_assert_eq!(gpu.slices_used(), (compute, memory));
    }
    if let Err(problem) = world.validate() {
        return Err(TestCaseError::fail(format!("validate: {problem}")));
    }
    Ok(())
}

fn run_lifecycle(product: Product, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut world = World::new("node", product, 1);
    check_invariants(&world)?;
    for (step, op) in ops.iter().enumerate() {
        let before = world.clone();
        let result = apply(&mut world, op);
        if let Err(e) = &result {
            prop_assert_eq!(
                &world,
                &before,
                "{}: step {} {:?} failed with {:?} but changed the World",
                product,
                step,
                op,
                e
            );
        }
        check_invariants(&world).map_err(|e| {
            TestCaseError::fail(format!("{product}: after step {step} {op:?} ({result:?}): {e}"))
        })?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    /// Property 1: invariants after every operation, refusals change nothing.
    #[test]
    fn lifecycle_keeps_invariants(
        ops in prop::collection::vec(op(), 0..=40),
        enable_first in prop::bool::weighted(0.9),
    ) {
        let mut ops = ops;
        if enable_first {
            ops.insert(0, Op::SetMig(true));
        }
        for product in products() {
            run_lifecycle(product, &ops)?;
        }
    }
}

// ---------------------------------------------------------------------------
// Reachable layouts, remaining capacity and the driver's placement choice
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum LayoutOp {
    Create(usize, Option<u32>),
    Destroy(usize),
}

fn layout_op() -> impl Strategy<Value = LayoutOp> {
    prop_oneof![
        5 => (0usize..64, prop_oneof![Just(None), (0u32..9).prop_map(Some)])
            .prop_map(|(p, s)| LayoutOp::Create(p, s)),
        1 => (0usize..64).prop_map(LayoutOp::Destroy),
    ]
}

/// A GPU with MIG enabled and the GI layout the successful steps of `ops` reach.
fn layout(product: Product, ops: &[LayoutOp]) -> Gpu {
    let mut gpu = Gpu::new("node", product, 0);
    gpu.set_mig_mode(true);
    let profiles = product.spec().profiles;
    for op in ops {
        match *op {
            LayoutOp::Create(p, start) => {
                let _ = gpu.create_gpu_instance(profiles[p % profiles.len()].id, start);
            }
            LayoutOp::Destroy(i) => {
                let ids = gi_ids(&gpu);
                if !ids.is_empty() {
                    gpu.destroy_gpu_instance(ids[i % ids.len()]).unwrap();
                }
            }
        }
    }
    gpu
}

/// Every start a placement could name, plus one past the slots.
fn candidate_starts(gpu: &Gpu) -> std::ops::RangeInclusive<u32> {
    0..=gpu.spec().memory_slots
}

/// The most instances of `profile_id` that can still be created, by trying
/// every explicit start on clones, recursively. Uses only `create_gpu_instance`.
fn brute_force_capacity(gpu: &Gpu, profile_id: u32, memo: &mut HashMap<Vec<(u32, u32, u32)>, u32>) -> u32 {
    let key: Vec<(u32, u32, u32)> = gpu
        .gpu_instances
        .iter()
        .map(|g| (g.placement.start, g.placement.size, g.profile_id))
        .collect();
    if let Some(&n) = memo.get(&key) {
        return n;
    }
    let mut best = 0;
    for start in candidate_starts(gpu) {
        let mut next = gpu.clone();
        if next.create_gpu_instance(profile_id, Some(start)).is_ok() {
            best = best.max(1 + brute_force_capacity(&next, profile_id, memo));
        }
    }
    memo.insert(key, best);
    best
}

fn check_capacity(product: Product, ops: &[LayoutOp]) -> Result<(), TestCaseError> {
    let gpu = layout(product, ops);
    let placer = gpu.placer();
    for profile in product.spec().profiles {
        let expected = brute_force_capacity(&gpu, profile.id, &mut HashMap::new());
        prop_assert_eq!(
            placer.remaining_capacity(profile),
            expected,
            "{} profile {} ({}) on layout {:?}",
            product,
            profile.id,
            profile.name,
            gpu.gpu_instances
                .iter()
                .map(|g| (g.profile_id, g.placement))
                .collect::<Vec<_>>()
        );
    }
    Ok(())
}

fn check_next_placement(product: Product, ops: &[LayoutOp]) -> Result<(), TestCaseError> {
    let gpu = layout(product, ops);
    let placer = gpu.placer();
    let slots = gpu.spec().memory_slots;
    for profile in product.spec().profiles {
        let ctx = format!(
            "{product} profile {} ({}) on layout {:?}",
            profile.id,
            profile.name,
            gpu.gpu_instances
                .iter()
                .map(|g| (g.profile_id, g.placement))
                .collect::<Vec<_>>()
        );
        // Where an explicit create succeeds, found by trying.
        let fits: Vec<Placement> = candidate_starts(&gpu)
            .filter(|&s| gpu.clone().create_gpu_instance(profile.id, Some(s)).is_ok())
            .map(|s| Placement::new(s, profile.memory_slices))
            .collect();
        prop_assert_eq!(&placer.free_placements(profile), &fits, "{}", ctx);

        let next = placer.next_placement(profile);
        // The driver's choice: the fitting placement after which the most
        // instances of all profiles can still be created (lowest start on a
        // tie), counted here by creating on clones.
        let room_after = |p: Placement| -> u32 {
            let mut g = gpu.clone();
            g.create_gpu_instance(profile.id, Some(p.start)).expect("fits");
            product
                .spec()
                .profiles
                .iter()
                .map(|q| g.placer().remaining_capacity(q))
                .sum()
        };
        let mut expected: Option<(u32, Placement)> = None;
        for &p in &fits {
            let room = room_after(p);
            if expected.is_none_or(|(most, _)| room > most) {
                expected = Some((room, p));
            }
        }
        prop_assert_eq!(next, expected.map(|(_, p)| p), "{}", ctx);
        if let Some(p) = next {
            let mut explicit = gpu.clone();
            prop_assert_eq!(
                explicit.create_gpu_instance(profile.id, Some(p.start)),
                Ok(gpu_instance_id(p, slots)),
                "{}",
                ctx
            );
        }

        let capacity = placer.remaining_capacity(profile);
        let mut implicit = gpu.clone();
        match implicit.create_gpu_instance(profile.id, None) {
            Ok(id) => {
                prop_assert!(capacity > 0, "created with capacity 0: {}", ctx);
                let p = next.expect("a placement exists");
                prop_assert_eq!(id, gpu_instance_id(p, slots), "{}", ctx);
                let created = implicit.gpu_instance(id).unwrap();
                prop_assert_eq!(created.placement, p, "{}", ctx);
                prop_assert_eq!(created.profile_id, profile.id, "{}", ctx);
                // One fewer fits afterwards.
                prop_assert_eq!(
                    implicit.placer().remaining_capacity(profile),
                    capacity - 1,
                    "{}",
                    ctx
                );
            }
            Err(e) => {
                prop_assert_eq!(e, MigError::InsufficientResources, "{}", ctx);
                prop_assert_eq!(capacity, 0, "refused with capacity > 0: {}", ctx);
                prop_assert_eq!(&implicit, &gpu, "a refusal changed the GPU: {}", ctx);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    /// Property 2: remaining capacity equals the brute-force maximum.
    #[test]
    fn remaining_capacity_matches_brute_force(ops in prop::collection::vec(layout_op(), 0..14)) {
        for product in products() {
            check_capacity(product, &ops)?;
        }
    }

    /// Property 3: the driver's choice is a valid placement, and an implicit
    /// create succeeds exactly when capacity remains.
    #[test]
    fn next_placement_is_the_drivers_choice(ops in prop::collection::vec(layout_op(), 0..14)) {
        for product in products() {
            check_next_placement(product, &ops)?;
        }
    }
}

/// The brute force itself, on an empty GPU: every profile alone fits at least
/// once, and never more than its own instance count.
#[test]
fn brute_force_sanity_on_empty_gpus() {
    for product in products() {
        let gpu = layout(product, &[]);
        for profile in product.spec().profiles {
            let n = brute_force_capacity(&gpu, profile.id, &mut HashMap::new());
            assert!(
                n >= 1 && n <= profile.max_instances,
                "{product} {}: {n}",
                profile.name
            );
        }
    }
}
