//! The commands, run against a loaded World. Each returns what to print on
//! success; the caller saves the World only when a command succeeds.
//!
//! Every operation goes through `mig-model`, so its refusals are the driver's.
//! Where nvidia-smi would apply part of a multi-item command and stop at the
//! first refusal, mig-sim applies none of it: the World file changes only when
//! every item succeeds.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use mig_model::{CiProfile, GiProfile, Gpu, GpuInstance, MigError, ModeChange, World};

use crate::args::{LoadArgs, MigAction};
use crate::error::{nvml_error_string, Failure};
use crate::render::{self, CiRow, CipRow, GiRow, GipRow};

const NO_MIG_DEVICES: &str = "No MIG-enabled devices found.\n";

/// Which GPUs a command addresses.
pub struct Selection {
    /// GPU indexes, in the order given, or every GPU by index.
    pub indexes: Vec<u32>,
    /// Whether `-i` named them.
    pub explicit: bool,
}

impl Selection {
    pub fn resolve(world: &World, path: &Path, tokens: Option<&[String]>) -> Result<Selection> {
        match tokens {
            None => {
                let mut indexes: Vec<u32> = world.gpus.iter().map(|g| g.index).collect();
                indexes.sort_unstable();
                Ok(Selection {
                    indexes,
                    explicit: false,
                })
            }
            Some(tokens) => {
                let mut indexes = Vec::new();
                for t in tokens {
                    let i = resolve_gpu(world, path, t)?;
                    if !indexes.contains(&i) {
                        indexes.push(i);
                    }
                }
                Ok(Selection {
                    indexes,
                    explicit: true,
                })
            }
        }
    }

    /// The GPUs a MIG operation works on: those named, or without `-i`
    /// every GPU in MIG mode (as nvidia-smi skips the others).
    fn mig(&self, world: &World) -> Vec<u32> {
        self.indexes
            .iter()
            .copied()
            .filter(|&i| self.explicit || world.gpu(i).is_ok_and(|g| g.mig.current))
            .collect()
    }
}

/// A GPU named by index, GPU UUID or PCI bus id (with or without the domain).
fn resolve_gpu(world: &World, path: &Path, token: &str) -> Result<u32> {
    let t = token.trim();
    let found = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse::<u32>()
            .ok()
            .and_then(|i| world.gpu(i).ok())
            .map(|g| g.index)
    } else {
        world
            .gpus
            .iter()
            .find(|g| {
                let bus = g.pci_bus_id.as_str();
                g.uuid.eq_ignore_ascii_case(t)
                    || bus.eq_ignore_ascii_case(t)
                    || bus.get(4..).is_some_and(|b| b.eq_ignore_ascii_case(t))
                    || bus.get(9..).is_some_and(|b| b.eq_ignore_ascii_case(t))
            })
            .map(|g| g.index)
    };
    found.ok_or_else(|| no_such_gpu(world, path, t))
}

fn no_such_gpu(world: &World, path: &Path, token: &str) -> anyhow::Error {
    let mut known: Vec<u32> = world.gpus.iter().map(|g| g.index).collect();
    known.sort_unstable();
    let known = known.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    Failure::nvml(
        MigError::NoSuchGpu(0).nvml_return(),
        format!(
            "mig-sim: no GPU '{token}' in {} (GPU indexes: {})",
            path.display(),
            if known.is_empty() { "none" } else { &known }
        ),
    )
}

/// nvidia-smi's two-line refusal: `Unable to ...: <NVML error>` and `Failed to ...: <NVML error>`,
/// with the model's explanation where it says more than the NVML string.
fn refusal(what: String, failed: &str, e: &MigError, extra: Option<String>) -> anyhow::Error {
    let code = e.nvml_return();
    let s = nvml_error_string(code);
    let detail = match (e, extra) {
        (_, Some(extra)) => format!(" ({extra})"),
        (MigError::InsufficientResources | MigError::InUse, None) => String::new(),
        (e, None) => format!(" ({e})"),
    };
    Failure::nvml(code, format!("{what}: {s}{detail}\n{failed}: {s}"))
}

fn not_found(failed: &str) -> anyhow::Error {
    Failure::nvml(6, format!("{failed}: {}", nvml_error_string(6)))
}

fn gpu_ref(world: &World, index: u32) -> Result<&Gpu> {
    world
        .gpu(index)
        .map_err(|e| Failure::nvml(e.nvml_return(), format!("mig-sim: {e}")))
}

fn gpu_mut(world: &mut World, index: u32) -> Result<&mut Gpu> {
    world
        .gpu_mut(index)
        .map_err(|e| Failure::nvml(e.nvml_return(), format!("mig-sim: {e}")))
}

/// The profile of an existing GPU instance (World files are validated on load).
fn gi_profile(gpu: &Gpu, gi: &GpuInstance) -> Result<&'static GiProfile> {
    gpu.gi_profile(gi)
        .map_err(|e| Failure::nvml(e.nvml_return(), format!("mig-sim: GPU {}: {e}", gpu.index)))
}

/// GPU instance ids in nvidia-smi's listing order: by profile, in the
/// product table's order, then by id (NVML enumerates instances per profile).
fn gi_ids_in_order(gpu: &Gpu) -> Vec<u32> {
    let spec = gpu.spec();
    let rank = |pid: u32| {
        spec.profiles
            .iter()
            .position(|p| p.id == pid)
            .unwrap_or(usize::MAX)
    };
    let mut gis: Vec<(usize, u32)> = gpu
        .gpu_instances
        .iter()
        .map(|g| (rank(g.profile_id), g.id))
        .collect();
    gis.sort_unstable();
    gis.into_iter().map(|(_, id)| id).collect()
}

/// Compute instances of `gi` by CI profile id, then id (NVML's enumeration order).
fn ci_ids_in_order(gi: &GpuInstance) -> Vec<u32> {
    let mut cis: Vec<(u32, u32)> = gi
        .compute_instances
        .iter()
        .map(|c| (c.profile_id, c.id))
        .collect();
    cis.sort_unstable();
    cis.into_iter().map(|(_, id)| id).collect()
}

fn ci_profile_name(ci_profiles: &[CiProfile], gi: &GiProfile, id: u32) -> String {
    ci_profiles
        .iter()
        .find(|p| p.id == id)
        .map(|p| p.name(gi))
        .unwrap_or_else(|| format!("CI profile {id}"))
}

fn known_ci_profiles(ci_profiles: &[CiProfile], gi: &GiProfile) -> String {
    ci_profiles
        .iter()
        .map(|p| format!("{} ({})", p.id, p.name(gi)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `-mig 0|1`
pub fn set_mig(world: &mut World, sel: &Selection, enabled: bool) -> Result<String> {
    let mut out = String::new();
    for &i in &sel.indexes {
        let gpu = gpu_mut(world, i)?;
        let bus = gpu.pci_bus_id.clone();
        match gpu.set_mig_mode(enabled) {
            ModeChange::Applied | ModeChange::Unchanged => {
                let verb = if enabled { "Enabled" } else { "Disabled" };
                let _ = writeln!(out, "{verb} MIG Mode for GPU {bus}");
            }
            ModeChange::PendingReset => {
                let state = if enabled { "enable" } else { "disable" };
                let _ = writeln!(
                    out,
                    "Warning: MIG mode is in pending {state} state for GPU {bus}:In use by another client\n\
                     {bus} is currently being used by one or more other processes (e.g. CUDA application or a \
                     monitoring application such as another instance of nvidia-smi). Please first kill all \
                     processes using the device and retry the command or reboot the system to make MIG mode effective."
                );
            }
        }
    }
    out.push_str("All done.\n");
    Ok(out)
}

/// `-L`
pub fn list_gpus(world: &World, sel: &Selection) -> Result<String> {
    let mut out = String::new();
    for &i in &sel.indexes {
        let gpu = gpu_ref(world, i)?;
        let _ = writeln!(out, "GPU {}: {} (UUID: {})", gpu.index, gpu.spec().name, gpu.uuid);
        if !gpu.mig.current {
            continue;
        }
        let mut device = 0;
        for gi_id in gi_ids_in_order(gpu) {
            let Ok(gi) = gpu.gpu_instance(gi_id) else { continue };
            let profile = gi_profile(gpu, gi)?;
            let ci_profiles = gpu.product.ci_profiles(profile);
            for ci_id in ci_ids_in_order(gi) {
                let Some(ci) = gi.compute_instances.iter().find(|c| c.id == ci_id) else {
                    continue;
                };
                let name = ci_profile_name(&ci_profiles, profile, ci.profile_id);
                out.push_str(&render::mig_device_line(&name, device, &ci.uuid));
                device += 1;
            }
        }
    }
    Ok(out)
}

pub fn mig(world: &mut World, sel: &Selection, action: &MigAction) -> Result<String> {
    match action {
        MigAction::CreateGi { profiles, default_ci } => create_gi(world, sel, profiles, *default_ci),
        MigAction::CreateCi { profiles, gis } => create_ci(world, sel, profiles.as_deref(), gis),
        MigAction::DestroyCi { cis, gis } => destroy_ci(world, sel, cis.as_deref(), gis.as_deref()),
        MigAction::DestroyGi { gis } => destroy_gi(world, sel, gis.as_deref()),
        MigAction::ListGi { gis } => list_gi(world, sel, gis.as_deref()),
        MigAction::ListCi { gis } => list_ci(world, sel, gis.as_deref()),
        MigAction::ListGip => list_gip(world, sel),
        MigAction::ListGipp => list_gipp(world, sel),
        MigAction::ListCip { gis } => list_cip(world, sel, gis.as_deref()),
    }
}

/// The GPUs a MIG mutation works on; an explicitly named GPU without MIG mode
/// is refused like the driver refuses it.
fn mutation_targets(world: &World, sel: &Selection, what: &str, failed: &str) -> Result<Vec<u32>> {
    let targets = sel.mig(world);
    if targets.is_empty() {
        return Err(Failure::nvml(6, NO_MIG_DEVICES.trim_end()));
    }
    for &i in &targets {
        let gpu = gpu_ref(world, i)?;
        if !gpu.mig.current {
            return Err(refusal(
                format!("Unable to {what} on GPU {i:>2}"),
                failed,
                &MigError::MigDisabled(i),
                None,
            ));
        }
    }
    Ok(targets)
}

fn create_gi(world: &mut World, sel: &Selection, profiles: &[String], default_ci: bool) -> Result<String> {
    const FAILED_GI: &str = "Failed to create GPU instances";
    const FAILED_CI: &str = "Failed to create compute instances";
    let mut out = String::new();
    for i in mutation_targets(world, sel, "create a GPU instance", FAILED_GI)? {
        let driver_version = world.driver_version.clone();
        let gpu = gpu_mut(world, i)?;
        for token in profiles {
            let unable = || format!("Unable to create a GPU instance on GPU {i:>2} using profile {token}");
            let profile = gpu
                .product
                .resolve_profile(token)
                .ok()
                .filter(|p| gpu.spec().offers(p.id, &driver_version))
                .ok_or_else(|| {
                    let unknown = mig_model::UnknownProfile {
                        product: gpu.product,
                        input: token.clone(),
                    };
                    refusal(unable(), FAILED_GI, &MigError::from(unknown), None)
                })?;
            let gi = gpu
                .create_gpu_instance(profile.id, None)
                .map_err(|e| refusal(unable(), FAILED_GI, &e, None))?;
            let _ = writeln!(
                out,
                "Successfully created GPU instance ID {gi:>2} on GPU {i:>2} using profile {} (ID {:>2})",
                profile.nvml_name(),
                profile.id
            );
            if default_ci {
                let ci = gpu.create_compute_instance(gi, None).map_err(|e| {
                    refusal(
                        format!("Unable to create a compute instance on GPU {i:>2} GPU instance ID {gi:>2}"),
                        FAILED_CI,
                        &e,
                        None,
                    )
                })?;
                let _ = writeln!(out, "{}", ci_created_line(gpu, gi, ci)?);
            }
        }
    }
    Ok(out)
}

fn ci_created_line(gpu: &Gpu, gi: u32, ci: u32) -> Result<String> {
    let instance = gpu
        .gpu_instance(gi)
        .map_err(|e| Failure::nvml(e.nvml_return(), format!("mig-sim: {e}")))?;
    let profile = gi_profile(gpu, instance)?;
    let ci_profiles = gpu.product.ci_profiles(profile);
    let pid = instance
        .compute_instances
        .iter()
        .find(|c| c.id == ci)
        .map_or(0, |c| c.profile_id);
    Ok(format!(
        "Successfully created compute instance ID {ci:>2} on GPU {:>2} GPU instance ID {gi:>2} using profile MIG {} (ID {pid:>2})",
        gpu.index,
        ci_profile_name(&ci_profiles, profile, pid)
    ))
}

/// A `-cci` profile given by id or by name (`1c.3g.40gb`, `MIG 3g.40gb`).
fn resolve_ci_profile(gpu: &Gpu, gi: u32, token: &str) -> Result<u32, String> {
    let instance = gpu.gpu_instance(gi).map_err(|e| e.to_string())?;
    let profile = gpu.gi_profile(instance).map_err(|e| e.to_string())?;
    let ci_profiles = gpu.product.ci_profiles(profile);
    let t = token.trim();
    let found = if t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse::<u32>()
            .ok()
            .filter(|id| ci_profiles.iter().any(|p| p.id == *id))
    } else {
        let name = t.strip_prefix("MIG ").unwrap_or(t);
        ci_profiles.iter().find(|p| p.name(profile) == name).map(|p| p.id)
    };
    found.ok_or_else(|| {
        format!(
            "GPU instance {gi} ({}) has no compute instance profile '{t}'; known: {}",
            profile.name,
            known_ci_profiles(&ci_profiles, profile)
        )
    })
}

fn create_ci(world: &mut World, sel: &Selection, profiles: Option<&[String]>, gis: &[u32]) -> Result<String> {
    const FAILED: &str = "Failed to create compute instances";
    let mut out = String::new();
    let mut created = 0;
    for i in mutation_targets(world, sel, "create a compute instance", FAILED)? {
        let gpu = gpu_mut(world, i)?;
        for &gi in gis {
            if gpu.gpu_instance(gi).is_err() {
                if sel.explicit {
                    return Err(refusal(
                        format!("Unable to create a compute instance on GPU {i:>2} GPU instance ID {gi:>2}"),
                        FAILED,
                        &MigError::NoSuchGpuInstance(gi),
                        None,
                    ));
                }
                continue;
            }
            let requested: Vec<Option<&str>> = match profiles {
                Some(list) => list.iter().map(|s| Some(s.as_str())).collect(),
                None => vec![None],
            };
            for token in requested {
                let unable = || {
                    match token {
                    Some(t) => format!(
                        "Unable to create a compute instance on GPU {i:>2} GPU instance ID {gi:>2} using profile {t}"
                    ),
                    None => format!("Unable to create a compute instance on GPU {i:>2} GPU instance ID {gi:>2}"),
                }
                };
                let id = match token {
                    Some(t) => Some(resolve_ci_profile(gpu, gi, t).map_err(|why| {
                        refusal(
                            unable(),
                            FAILED,
                            &MigError::UnknownCiProfile {
                                gi,
                                profile: String::new(),
                                id: 0,
                            },
                            Some(why),
                        )
                    })?),
                    None => None,
                };
                let ci = gpu
                    .create_compute_instance(gi, id)
                    .map_err(|e| refusal(unable(), FAILED, &e, None))?;
                let _ = writeln!(out, "{}", ci_created_line(gpu, gi, ci)?);
                created += 1;
            }
        }
    }
    if created == 0 {
        return Err(Failure::nvml(
            6,
            format!(
                "Unable to create a compute instance: no GPU instance with ID {} exists\n{FAILED}: {}",
                join_ids(gis),
                nvml_error_string(6)
            ),
        ));
    }
    Ok(out)
}

fn join_ids(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// The GPU instances an operation addresses on one GPU: those named by `-gi`
/// (each must exist when `-i` named the GPU too; otherwise where present),
/// or all of them.
fn addressed_gis(gpu: &Gpu, sel: &Selection, gis: Option<&[u32]>) -> Result<Vec<u32>, MigError> {
    let all = gi_ids_in_order(gpu);
    match gis {
        None => Ok(all),
        Some(named) => {
            if sel.explicit {
                if let Some(&missing) = named.iter().find(|g| !all.contains(g)) {
                    return Err(MigError::NoSuchGpuInstance(missing));
                }
            }
            Ok(all.into_iter().filter(|g| named.contains(g)).collect())
        }
    }
}

fn destroy_ci(
    world: &mut World,
    sel: &Selection,
    cis: Option<&[u32]>,
    gis: Option<&[u32]>,
) -> Result<String> {
    const FAILED: &str = "Failed to destroy compute instances";
    let mut out = String::new();
    let mut destroyed = 0;
    for i in mutation_targets(world, sel, "destroy compute instances", FAILED)? {
        let gpu = gpu_mut(world, i)?;
        let targets = addressed_gis(gpu, sel, gis).map_err(|e| {
            refusal(
                format!("Unable to destroy compute instances on GPU {i:>2}"),
                FAILED,
                &e,
                None,
            )
        })?;
        // A CI id must exist in its GI when the GPU and the GI were both named.
        let strict = sel.explicit && gis.is_some();
        for gi in targets {
            let present = gpu.gpu_instance(gi).map(ci_ids_in_order).unwrap_or_default();
            let wanted: Vec<u32> = match cis {
                None => present.clone(),
                Some(named) => {
                    if strict {
                        named.to_vec()
                    } else {
                        present.iter().copied().filter(|c| named.contains(c)).collect()
                    }
                }
            };
            for ci in wanted {
                gpu.destroy_compute_instance(gi, ci).map_err(|e| {
                    refusal(
                        format!("Unable to destroy compute instance ID {ci:>2} from GPU {i:>2} GPU instance ID {gi:>2}"),
                        FAILED,
                        &e,
                        None,
                    )
                })?;
                let _ = writeln!(
                    out,
                    "Successfully destroyed compute instance ID {ci:>2} from GPU {i:>2} GPU instance ID {gi:>2}"
                );
                destroyed += 1;
            }
        }
    }
    if destroyed == 0 {
        return Err(not_found(FAILED));
    }
    Ok(out)
}

fn destroy_gi(world: &mut World, sel: &Selection, gis: Option<&[u32]>) -> Result<String> {
    const FAILED: &str = "Failed to destroy GPU instances";
    let mut out = String::new();
    let mut destroyed = 0;
    for i in mutation_targets(world, sel, "destroy GPU instances", FAILED)? {
        let gpu = gpu_mut(world, i)?;
        let targets = addressed_gis(gpu, sel, gis).map_err(|e| {
            let gi = match e {
                MigError::NoSuchGpuInstance(g) => g,
                _ => 0,
            };
            refusal(
                format!("Unable to destroy GPU instance ID {gi:>2} from GPU {i:>2}"),
                FAILED,
                &e,
                None,
            )
        })?;
        for gi in targets {
            gpu.destroy_gpu_instance(gi).map_err(|e| {
                refusal(
                    format!("Unable to destroy GPU instance ID {gi:>2} from GPU {i:>2}"),
                    FAILED,
                    &e,
                    None,
                )
            })?;
            let _ = writeln!(
                out,
                "Successfully destroyed GPU instance ID {gi:>2} from GPU {i:>2}"
            );
            destroyed += 1;
        }
    }
    if destroyed == 0 {
        return Err(not_found(FAILED));
    }
    Ok(out)
}

/// GPUs a listing shows: MIG-enabled ones among those selected.
fn listed(world: &World, sel: &Selection) -> Vec<u32> {
    sel.indexes
        .iter()
        .copied()
        .filter(|&i| world.gpu(i).is_ok_and(|g| g.mig.current))
        .collect()
}

fn list_gi(world: &World, sel: &Selection, gis: Option<&[u32]>) -> Result<String> {
    let gpus = listed(world, sel);
    if gpus.is_empty() {
        return Ok(NO_MIG_DEVICES.to_string());
    }
    let mut rows = Vec::new();
    for i in gpus {
        let gpu = gpu_ref(world, i)?;
        for id in gi_ids_in_order(gpu) {
            if gis.is_some_and(|named| !named.contains(&id)) {
                continue;
            }
            let Ok(gi) = gpu.gpu_instance(id) else { continue };
            let profile = gi_profile(gpu, gi)?;
            rows.push(GiRow {
                gpu: i,
                name: profile.nvml_name(),
                profile_id: profile.id,
                gi: id,
                placement: gi.placement.to_string(),
            });
        }
    }
    if rows.is_empty() {
        return Ok("No GPU instances found: Not Found\n".to_string());
    }
    Ok(render::gi_table(&rows))
}

fn list_ci(world: &World, sel: &Selection, gis: Option<&[u32]>) -> Result<String> {
    let gpus = listed(world, sel);
    if gpus.is_empty() {
        return Ok(NO_MIG_DEVICES.to_string());
    }
    let mut rows = Vec::new();
    for i in gpus {
        let gpu = gpu_ref(world, i)?;
        for gi_id in gi_ids_in_order(gpu) {
            if gis.is_some_and(|named| !named.contains(&gi_id)) {
                continue;
            }
            let Ok(gi) = gpu.gpu_instance(gi_id) else { continue };
            let profile = gi_profile(gpu, gi)?;
            let ci_profiles = gpu.product.ci_profiles(profile);
            for ci_id in ci_ids_in_order(gi) {
                let Some(ci) = gi.compute_instances.iter().find(|c| c.id == ci_id) else {
                    continue;
                };
                rows.push(CiRow {
                    gpu: i,
                    gi: gi_id,
                    name: format!("MIG {}", ci_profile_name(&ci_profiles, profile, ci.profile_id)),
                    profile_id: ci.profile_id,
                    ci: ci.id,
                    placement: ci.placement.to_string(),
                });
            }
        }
    }
    if rows.is_empty() {
        return Ok("No compute instances found: Not Found\n".to_string());
    }
    Ok(render::ci_table(&rows))
}

/// `-lgip` lists every selected GPU, in MIG mode or not, as the real one does.
fn list_gip(world: &World, sel: &Selection) -> Result<String> {
    let mut rows = Vec::new();
    for &i in &sel.indexes {
        let gpu = gpu_ref(world, i)?;
        let placer = gpu.placer();
        // Only what the World's driver offers (NVIDIA's MIG user guide: some
        // profiles exist only from a driver branch on).
        for p in gpu.spec().profiles_offered(&world.driver_version) {
            rows.push(GipRow {
                gpu: i,
                name: p.nvml_name(),
                id: p.id,
                free: placer.remaining_capacity(p),
                total: p.max_instances,
                memory_mib: p.memory_mib,
                // MIG profiles report isP2pSupported = 0.
                p2p: false,
                sm: p.sm_count,
                dec: p.engines.decoder,
                enc: p.engines.encoder,
                ce: p.engines.copy,
                jpeg: p.engines.jpeg,
                ofa: p.engines.ofa,
            });
        }
    }
    Ok(render::gip_table(&rows))
}

fn list_gipp(world: &World, sel: &Selection) -> Result<String> {
    let mut out = String::new();
    for &i in &sel.indexes {
        let gpu = gpu_ref(world, i)?;
        for p in gpu.spec().profiles_offered(&world.driver_version) {
            out.push_str(&render::gipp_line(i, p.id, p.placement_starts, p.memory_slices));
        }
    }
    Ok(out)
}

fn list_cip(world: &World, sel: &Selection, gis: Option<&[u32]>) -> Result<String> {
    let gpus = listed(world, sel);
    if gpus.is_empty() {
        return Ok(NO_MIG_DEVICES.to_string());
    }
    let mut rows = Vec::new();
    for i in gpus {
        let gpu = gpu_ref(world, i)?;
        for gi_id in gi_ids_in_order(gpu) {
            if gis.is_some_and(|named| !named.contains(&gi_id)) {
                continue;
            }
            let Ok(gi) = gpu.gpu_instance(gi_id) else { continue };
            let profile = gi_profile(gpu, gi)?;
            for p in gpu.product.ci_profiles(profile) {
                rows.push(CipRow {
                    gpu: i,
                    gi: gi_id,
                    name: format!("MIG {}", p.name(profile)),
                    id: p.id,
                    default: p.compute_slices == profile.compute_slices,
                    free: mig_model::world::ci_remaining_capacity(gi, profile, &p),
                    total: p.max_instances,
                    sm: p.sm_count,
                    dec: profile.engines.decoder,
                    enc: profile.engines.encoder,
                    ofa: profile.engines.ofa,
                    ce: profile.engines.copy,
                    jpeg: profile.engines.jpeg,
                });
            }
        }
    }
    if rows.is_empty() {
        return Ok("No GPU instances found: Not Found\n".to_string());
    }
    Ok(render::cip_table(&rows))
}

/// `reboot`
pub fn reboot(world: &mut World) -> String {
    world.reboot();
    let mut out = format!("Rebooted {} (boot id {})\n", world.hostname, world.boot_id);
    let mut gpus: Vec<&Gpu> = world.gpus.iter().collect();
    gpus.sort_by_key(|g| g.index);
    for gpu in gpus {
        let arch = gpu.spec().architecture;
        let _ = writeln!(
            out,
            "GPU {} ({}, {arch}): MIG mode {}{}",
            gpu.index,
            gpu.pci_bus_id,
            if gpu.mig.current { "Enabled" } else { "Disabled" },
            if arch.mig_mode_survives_reboot() {
                ", kept across the reboot; GPU instances gone"
            } else {
                ", not kept across the reboot; GPU instances gone"
            }
        );
    }
    out
}

/// `clients`
pub fn clients(world: &mut World, path: &Path, gpu: u32, count: u32) -> Result<String> {
    if world.gpu(gpu).is_err() {
        return Err(no_such_gpu(world, path, &gpu.to_string()));
    }
    let g = gpu_mut(world, gpu)?;
    g.clients = count;
    Ok(format!(
        "GPU {} ({}): {count} client process{} attached\n",
        g.index,
        g.pci_bus_id,
        if count == 1 { "" } else { "es" }
    ))
}

/// `load`: GPU-instance fields go to the GI, compute-instance fields to the
/// named CI or to every CI of the GI.
pub fn load(world: &mut World, path: &Path, l: &LoadArgs) -> Result<String> {
    if world.gpu(l.gpu).is_err() {
        return Err(no_such_gpu(world, path, &l.gpu.to_string()));
    }
    let g = gpu_mut(world, l.gpu)?;
    let gpu_index = g.index;
    let instance = g.gpu_instance(l.gi).map_err(|_| {
        Failure::nvml(
            6,
            format!(
                "mig-sim: GPU {gpu_index} has no GPU instance {} (see 'mig-sim -i {gpu_index} mig -lgi')",
                l.gi
            ),
        )
    })?;
    let profile = gi_profile(g, instance)?;
    if let Some(mib) = l.fb_used_mib {
        if mib > profile.memory_mib {
            return Err(Failure::usage(format!(
                "invalid value '{mib}' for --fb-used-mib: GPU instance {} on GPU {gpu_index} ({}) has {} MiB",
                l.gi, profile.name, profile.memory_mib
            )));
        }
    }
    let ci_ids: Vec<u32> = match l.ci {
        Some(ci) => {
            if !instance.compute_instances.iter().any(|c| c.id == ci) {
                return Err(Failure::nvml(
                    6,
                    format!(
                        "mig-sim: GPU {gpu_index} GPU instance {} has no compute instance {ci} (see 'mig-sim -i {gpu_index} mig -lci -gi {}')",
                        l.gi, l.gi
                    ),
                ));
            }
            vec![ci]
        }
        None => ci_ids_in_order(instance),
    };
    if l.has_ci_fields() && ci_ids.is_empty() {
        return Err(Failure::nvml(
            6,
            format!(
                "mig-sim: GPU {gpu_index} GPU instance {} has no compute instances to take --sm-active, --sm-occupancy or --tensor-active (create one with 'mig-sim -i {gpu_index} mig -cci -gi {}')",
                l.gi, l.gi
            ),
        ));
    }
    let gi = g
        .gpu_instance_mut(l.gi)
        .map_err(|e| Failure::nvml(e.nvml_return(), format!("mig-sim: {e}")))?;
    let mut out = String::new();
    if l.has_gi_fields() {
        if let Some(v) = l.dram_active {
            gi.load.dram_active = v;
        }
        if let Some(v) = l.fb_used_mib {
            gi.load.memory_used_mib = v;
        }
        let _ = writeln!(
            out,
            "GPU {gpu_index} GPU instance {}: dram_active {}, memory_used_mib {}",
            l.gi, gi.load.dram_active, gi.load.memory_used_mib
        );
    }
    if l.has_ci_fields() {
        for ci in gi.compute_instances.iter_mut().filter(|c| ci_ids.contains(&c.id)) {
            if let Some(v) = l.sm_active {
                ci.load.sm_active = v;
            }
            if let Some(v) = l.sm_occupancy {
                ci.load.sm_occupancy = v;
            }
            if let Some(v) = l.tensor_active {
                ci.load.tensor_active = v;
            }
            let _ = writeln!(
                out,
                "GPU {gpu_index} GPU instance {} compute instance {}: sm_active {}, sm_occupancy {}, tensor_active {}",
                l.gi, ci.id, ci.load.sm_active, ci.load.sm_occupancy, ci.load.tensor_active
            );
        }
    }
    Ok(out)
}
