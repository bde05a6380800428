//! Built-in Worlds for `serve --simulate`: the node shapes operators meet.
//! Each is built through `mig-model`'s driver operations, so it can only be a
//! layout the driver would allow.

use mig_model::{CiLoad, GiLoad, MigError, Product, World};

/// (name, what it shows)
pub const SCENARIOS: &[(&str, &str)] = &[
    (
        "h100-mixed",
        "8x H100 80GB, MIG on, a different mix of profiles on every GPU, under load",
    ),
    (
        "a100-single",
        "8x A100-SXM4-40GB, MIG on, seven 1g.5gb on every GPU (single strategy)",
    ),
    (
        "h100-rebooted",
        "8x H100 80GB just after a reboot: MIG mode and every instance gone",
    ),
    (
        "gi-without-ci",
        "8x H100 80GB where some GPU instances were created without compute instances",
    ),
    (
        "a100-pending",
        "8x A100-SXM4-40GB where enabling MIG was refused on GPU 1 (clients attached)",
    ),
];

pub const DEFAULT_SCENARIO: &str = "h100-mixed";

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("unknown scenario '{name}' (known: {})", SCENARIOS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))]
    Unknown { name: String },
    #[error("building scenario '{0}': {1}")]
    Build(String, MigError),
}

pub fn build(name: &str) -> Result<World, ScenarioError> {
    let built = match name {
        "h100-mixed" => h100_mixed(),
        "a100-single" => uniform(Product::A100Sxm4_40GB, 19, 7),
        "h100-rebooted" => h100_mixed().map(|mut w| {
            w.reboot();
            w
        }),
        "gi-without-ci" => gi_without_ci(),
        "a100-pending" => a100_pending(),
        other => {
            return Err(ScenarioError::Unknown {
                name: other.to_string(),
            })
        }
    };
    built.map_err(|e| ScenarioError::Build(name.to_string(), e))
}

/// The node a scenario's story starts from, where it has one: `h100-rebooted`
/// is `h100-mixed` before the reboot. Drift detection takes it as the
/// scenario's last-known-good state (built-in scenarios have no desired config).
pub fn previous_boot(name: &str) -> Result<Option<World>, ScenarioError> {
    match name {
        "h100-rebooted" => h100_mixed()
            .map(Some)
            .map_err(|e| ScenarioError::Build(name.to_string(), e)),
        _ => Ok(None),
    }
}

const HOST: &str = "sim-node-0";

/// Profile ids per GPU (H100 80GB): 19 1g.10gb, 20 1g.10gb+me, 15 1g.20gb,
/// 14 2g.20gb, 9 3g.40gb, 5 4g.40gb, 0 7g.80gb.
const H100_MIX: [&[u32]; 8] = [
    &[19, 19, 19, 19, 19, 19, 19],
    &[9, 9],
    &[5, 14, 19],
    &[0],
    &[15, 15, 15, 15],
    &[14, 14, 14, 19],
    &[9, 20, 19],
    &[9],
];

fn h100_mixed() -> Result<World, MigError> {
    let mut world = World::new(HOST, Product::H100_80GB, 8);
    for (gpu, profiles) in world.gpus.iter_mut().zip(H100_MIX) {
        gpu.set_mig_mode(true);
        for &profile in profiles {
            let gi = gpu.create_gpu_instance(profile, None)?;
            if gpu.index == 7 {
                // Split the last GPU's 3g.40gb into a 2c and a 1c compute instance.
                gpu.create_compute_instance(gi, Some(1))?;
                gpu.create_compute_instance(gi, Some(0))?;
            } else {
                gpu.create_compute_instance(gi, None)?;
            }
        }
    }
    apply_load(&mut world);
    Ok(world)
}

fn uniform(product: Product, profile: u32, count: u32) -> Result<World, MigError> {
    let mut world = World::new(HOST, product, 8);
    for gpu in &mut world.gpus {
        gpu.set_mig_mode(true);
        for _ in 0..count {
            let gi = gpu.create_gpu_instance(profile, None)?;
            gpu.create_compute_instance(gi, None)?;
        }
    }
    apply_load(&mut world);
    Ok(world)
}

fn gi_without_ci() -> Result<World, MigError> {
    let mut world = h100_mixed()?;
    // GPU 2: the 2g.20gb lost its compute instance; GPU 4: a fresh -cgi without -C.
    let gpu = world.gpu_mut(2)?;
    gpu.destroy_compute_instance(5, 0)?;
    let gpu = world.gpu_mut(4)?;
    for gi in [3, 4] {
        gpu.destroy_compute_instance(gi, 0)?;
    }
    Ok(world)
}

fn a100_pending() -> Result<World, MigError> {
    let mut world = uniform(Product::A100Sxm4_40GB, 19, 7)?;
    let gpu = world.gpu_mut(1)?;
    // Someone disabled MIG with a process attached: the reset is refused and
    // the GPU keeps running MIG with `pending` disabled.
    gpu.clients = 1;
    gpu.set_mig_mode(false);
    Ok(world)
}

/// Deterministic, varied load so dashboards and the landing page show a spread.
fn apply_load(world: &mut World) {
    for gpu in &mut world.gpus {
        let mib = |p: u32| gpu.product.profile_by_id(p).map_or(0, |p| p.memory_mib);
        let spread = |seed: u32| f64::from((seed.wrapping_mul(2_654_435_761) >> 7) % 97) / 100.0;
        for gi in &mut gpu.gpu_instances {
            let seed = gpu.index * 31 + gi.id;
            gi.load = GiLoad {
                dram_active: spread(seed + 3),
                memory_used_mib: (mib(gi.profile_id) as f64 * spread(seed + 5)) as u64,
            };
            for ci in &mut gi.compute_instances {
                let s = seed * 7 + ci.id;
                let sm_active = spread(s);
                ci.load = CiLoad {
                    sm_active,
                    sm_occupancy: sm_active * spread(s + 1),
                    tensor_active: sm_active * spread(s + 2),
                    ..CiLoad::default()
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn every_scenario_builds_a_valid_world() {
        for (name, _) in SCENARIOS {
            let world = build(name).unwrap_or_else(|e| panic!("{e}"));
            World::from_json(&world.to_json(), Path::new(name)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(world.gpus.len(), 8, "{name}");
        }
    }

    #[test]
    fn scenarios_show_what_they_promise() {
        let mixed = build("h100-mixed").unwrap();
        assert!(mixed
            .gpus
            .iter()
            .all(|g| g.mig.current && !g.gpu_instances.is_empty()));
        let shapes: std::collections::BTreeSet<_> = mixed
            .gpus
            .iter()
            .flat_map(|g| g.gpu_instances.iter().map(|gi| gi.profile_id))
            .collect();
        assert_eq!(shapes.len(), 7, "every H100 profile appears");

        let rebooted = build("h100-rebooted").unwrap();
        assert!(rebooted
            .gpus
            .iter()
            .all(|g| !g.mig.current && g.gpu_instances.is_empty()));
        assert_ne!(rebooted.boot_id, mixed.boot_id);

        let bare = build("gi-without-ci").unwrap();
        let empty: Vec<_> = bare
            .gpus
            .iter()
            .flat_map(|g| {
                g.gpu_instances
                    .iter()
                    .filter(|gi| gi.compute_instances.is_empty())
                    .map(|gi| (g.index, gi.id))
            })
            .collect();
        assert_eq!(empty, vec![(2, 5), (4, 3), (4, 4)]);

        let single = build("a100-single").unwrap();
        assert!(single
            .gpus
            .iter()
            .all(|g| g.gpu_instances.len() == 7 && g.gpu_instances.iter().all(|gi| gi.profile_id == 19)));

        let pending = build("a100-pending").unwrap();
        assert!(pending.gpus[1].mig.current && !pending.gpus[1].mig.pending);

        let before = previous_boot("h100-rebooted").unwrap().unwrap();
        assert_eq!(before, mixed, "rebooted from the mixed node");
        let mut after = before.clone();
        after.reboot();
        assert_eq!(after, rebooted);
        assert!(previous_boot("h100-mixed").unwrap().is_none());
    }

    #[test]
    fn unknown_scenario_lists_the_known_ones() {
        let e = build("h100").unwrap_err().to_string();
        assert!(
            e.contains("'h100'") && e.contains("h100-mixed") && e.contains("gi-without-ci"),
            "{e}"
        );
    }
}
