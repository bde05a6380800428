//! MIG profile names and the per-profile facts NVML reports.
//!
//! A GPU-instance profile name encodes its shape: `<compute slices>g.<memory GB>gb`,
//! optionally followed by a media-engine suffix (`+me`, `-me`, `+me.all`) and a
//! graphics suffix (`+gfx`, RTX PRO Blackwell only). The suffixes change which
//! engines the instance owns, so they are parsed into [`MediaEngines`] and
//! [`ProfileName::graphics`], not kept as opaque strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which media engines (NVDEC, NVJPG, OFA) a profile carries, as named by its suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaEngines {
    /// No suffix: the profile's proportional share of media engines.
    Proportional,
    /// `+me`: a small profile that additionally owns the media engines (decoders,
    /// JPEG and the optical-flow accelerator). Only one such instance fits a GPU.
    Extended,
    /// `-me`: compute only, media engines stripped (Blackwell).
    Stripped,
    /// `+me.all`: owns every media engine of the GPU (Blackwell).
    All,
}

impl MediaEngines {
    fn suffix(self) -> &'static str {
        match self {
            MediaEngines::Proportional => "",
            MediaEngines::Extended => "+me",
            MediaEngines::Stripped => "-me",
            MediaEngines::All => "+me.all",
        }
    }
}

/// A parsed GPU-instance profile name such as `1g.10gb+me` or `2g.48gb+gfx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProfileName {
    pub compute_slices: u32,
    pub memory_gb: u32,
    pub media: MediaEngines,
    /// `+gfx`: graphics APIs enabled in the instance (RTX PRO Blackwell).
    pub graphics: bool,
}

impl ProfileName {
    pub const fn new(compute_slices: u32, memory_gb: u32) -> Self {
        ProfileName {
            compute_slices,
            memory_gb,
            media: MediaEngines::Proportional,
            graphics: false,
        }
    }

    pub const fn with_media(self, media: MediaEngines) -> Self {
        ProfileName { media, ..self }
    }

    pub const fn with_graphics(self) -> Self {
        ProfileName {
            graphics: true,
            ..self
        }
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}g.{}gb{}{}",
            self.compute_slices,
            self.memory_gb,
            self.media.suffix(),
            if self.graphics { "+gfx" } else { "" }
        )
    }
}

/// Why a string is not a MIG profile name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{input}' is not a MIG profile name ({reason}); expected e.g. 3g.40gb, 1g.10gb+me, 1g.24gb+gfx")]
pub struct ProfileNameError {
    pub input: String,
    pub reason: &'static str,
}

impl FromStr for ProfileName {
    type Err = ProfileNameError;

    /// Accepts the bare name (`3g.40gb`) and NVML's form (`MIG 3g.40gb`).
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| ProfileNameError {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        let s = s.strip_prefix("MIG ").unwrap_or(s);
        let (compute, rest) = s.split_once("g.").ok_or_else(|| err("missing '<n>g.'"))?;
        let compute_slices = parse_count(compute).ok_or_else(|| err("bad compute slice count"))?;
        let gb_end = rest.find("gb").ok_or_else(|| err("missing 'gb'"))?;
        let memory_gb = parse_count(&rest[..gb_end]).ok_or_else(|| err("bad memory size"))?;
        let mut suffixes = &rest[gb_end + 2..];

        let mut graphics = false;
        if let Some(stripped) = suffixes.strip_suffix("+gfx") {
            graphics = true;
            suffixes = stripped;
        }
        let media = match suffixes {
            "" => MediaEngines::Proportional,
            "+me" => MediaEngines::Extended,
            "-me" => MediaEngines::Stripped,
            "+me.all" => MediaEngines::All,
            _ => return Err(err("unknown suffix; known: +me, -me, +me.all, +gfx")),
        };
        Ok(ProfileName {
            compute_slices,
            memory_gb,
            media,
            graphics,
        })
    }
}

fn parse_count(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 4 {
        return None;
    }
    s.parse().ok().filter(|n| *n > 0)
}

impl Serialize for ProfileName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ProfileName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Engines a GPU instance owns, as reported in NVML's `nvmlGpuInstanceProfileInfo_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Engines {
    pub copy: u32,
    pub decoder: u32,
    pub encoder: u32,
    pub jpeg: u32,
    pub ofa: u32,
}

impl Engines {
    pub const fn new(copy: u32, decoder: u32, encoder: u32, jpeg: u32, ofa: u32) -> Self {
        Engines {
            copy,
            decoder,
            encoder,
            jpeg,
            ofa,
        }
    }
}

/// One row of a product's GPU-instance profile table (what `nvidia-smi mig -lgip`
/// and `-lgipp` print, and what `nvmlDeviceGetGpuInstanceProfileInfo` returns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GiProfile {
    /// The profile id NVML and `nvidia-smi mig -cgi` use (e.g. 19 for `1g.10gb`).
    pub id: u32,
    /// The `NVML_GPU_INSTANCE_PROFILE_*` constant that selects this profile in
    /// `nvmlDeviceGetGpuInstanceProfileInfo` (0 = 1 slice, 7 = 1 slice rev1, ...).
    pub nvml_index: u32,
    pub name: ProfileName,
    /// SM slices (NVML's `sliceCount`).
    pub compute_slices: u32,
    /// Memory slices; equals the placement size.
    pub memory_slices: u32,
    pub sm_count: u32,
    /// NVML's `memorySizeMB` (MiB).
    pub memory_mib: u64,
    /// NVML's `instanceCount`: how many of this profile alone fit a GPU.
    pub max_instances: u32,
    pub engines: Engines,
    /// Memory-slot indexes where an instance of this profile may start.
    pub placement_starts: &'static [u32],
}

impl GiProfile {
    /// The name NVML reports (`MIG 1g.10gb`).
    pub fn nvml_name(&self) -> String {
        format!("MIG {}", self.name)
    }
}

/// `NVML_COMPUTE_INSTANCE_PROFILE_*` constants, indexed by SM slice count.
/// The same numbers are the compute-instance profile ids `nvidia-smi mig -cci` takes.
pub fn compute_instance_profile_id(slices: u32) -> Option<u32> {
    match slices {
        1 => Some(0),
        2 => Some(1),
        3 => Some(2),
        4 => Some(3),
        7 => Some(4),
        8 => Some(5),
        6 => Some(6),
        _ => None,
    }
}

/// The SM slice count of a compute-instance profile id; inverse of
/// [`compute_instance_profile_id`].
pub fn compute_instance_profile_slices(id: u32) -> Option<u32> {
    [1, 2, 3, 4, 6, 7, 8]
        .into_iter()
        .find(|s| compute_instance_profile_id(*s) == Some(id))
}

/// A compute-instance profile available inside one GPU-instance profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiProfile {
    pub id: u32,
    pub compute_slices: u32,
    pub sm_count: u32,
    /// Slice offsets inside the GPU instance where such a CI may start.
    pub placement_starts: Vec<u32>,
    /// How many of this profile alone fit the GPU instance.
    pub max_instances: u32,
}

impl CiProfile {
    /// `1c.3g.40gb` for a partial CI; the GI's own name when the CI spans it,
    /// less a media-engine suffix: the CI of a `1g.10gb+me` GI is a
    /// `1g.10gb`, as a user's published `nvidia-smi mig -cgi 20 -C` on an
    /// H100 printed ("created compute instance ... using profile MIG 1g.10gb
    /// (ID 0)" in GPU instance 13, a `1g.10gb+me`). unverified: the same for
    /// `-me` and `+me.all` (Blackwell), by analogy; `+gfx` is kept.
    pub fn name(&self, gi: &GiProfile) -> String {
        let base = gi.name.with_media(MediaEngines::Proportional);
        if self.compute_slices == gi.compute_slices {
            base.to_string()
        } else {
            format!("{}c.{}", self.compute_slices, base)
        }
    }

    pub fn nvml_name(&self, gi: &GiProfile) -> String {
        format!("MIG {}", self.name(gi))
    }
}

/// The compute-instance profiles a GPU instance of `gi` offers, given the
/// product's GPU-instance profile `table`.
///
/// A CI of `c` slices starts at offsets aligned to the next power of two of `c`
/// (a `3c` in a `7g` GI may start at 0 or 4, as a `3g` GI does in the GPU).
/// A `4g` GI offers no `3c`: NVIDIA's MIG user guide ("Getting Started with
/// MIG") shows `nvidia-smi mig -lcip` on an A100's `4g.20gb` GI listing
/// `1c.4g.20gb` (4/4), `2c.4g.20gb` (2/2) and `4g.20gb` (1/1) only.
/// unverified: the same on Hopper and Blackwell `4g` GIs.
/// A partial CI gets the SMs of the product's plain `c`-slice GI profile (a
/// `1c.7g.80gb` has the 16 SMs of a `1g.10gb`, not 132/7), capped by the parent.
pub fn ci_profiles(gi: &GiProfile, table: &[GiProfile]) -> Vec<CiProfile> {
    let g = gi.compute_slices;
    let sms_of = |c: u32| {
        table
            .iter()
            .filter(|p| {
                p.compute_slices == c && p.name.media == MediaEngines::Proportional && !p.name.graphics
            })
            .map(|p| p.sm_count)
            .min()
            .unwrap_or(gi.sm_count * c / g)
            .min(gi.sm_count)
    };
    let mut out = Vec::new();
    for c in [1u32, 2, 3, 4, 7] {
        if c > g || (c == 3 && g == 4) {
            continue;
        }
        let Some(id) = compute_instance_profile_id(c) else {
            continue;
        };
        let align = c.next_power_of_two();
        let placement_starts: Vec<u32> = (0..g).filter(|s| s % align == 0 && s + c <= g).collect();
        if placement_starts.is_empty() {
            continue;
        }
        let sm_count = if c == g { gi.sm_count } else { sms_of(c) };
        out.push(CiProfile {
            id,
            compute_slices: c,
            sm_count,
            max_instances: (g / c).min(placement_starts.len() as u32),
            placement_starts,
        });
    }
    if !out.iter().any(|p| p.compute_slices == g) {
        if let Some(id) = compute_instance_profile_id(g) {
            out.push(CiProfile {
                id,
                compute_slices: g,
                sm_count: gi.sm_count,
                placement_starts: vec![0],
                max_instances: 1,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_every_suffix() {
        for s in [
            "1g.10gb",
            "1g.10gb+me",
            "1g.23gb-me",
            "1g.24gb+me.all",
            "1g.24gb+gfx",
            "2g.48gb-me+gfx",
            "7g.141gb",
        ] {
            let p: ProfileName = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
        let p: ProfileName = "MIG 1g.10gb+me".parse().unwrap();
        assert_eq!(p.media, MediaEngines::Extended);
        assert_eq!((p.compute_slices, p.memory_gb), (1, 10));
        let p: ProfileName = "1g.24gb+gfx".parse().unwrap();
        assert!(p.graphics);
        assert_eq!(p.media, MediaEngines::Proportional);
        let p: ProfileName = "1g.24gb+me.all".parse().unwrap();
        assert_eq!(p.media, MediaEngines::All);
        let p: ProfileName = "1g.23gb-me".parse().unwrap();
        assert_eq!(p.media, MediaEngines::Stripped);
    }

    #[test]
    fn rejects_malformed_names() {
        for s in [
            "",
            "3g",
            "3g.40",
            "g.40gb",
            "0g.10gb",
            "3g.40gb+xx",
            "3g.40gb+gfx+me",
            "x3g.40gb",
        ] {
            let e = s.parse::<ProfileName>().unwrap_err();
            assert_eq!(e.input, s);
        }
    }

    #[test]
    fn a_4g_gi_offers_the_compute_profiles_nvidia_smi_lists() {
        // NVIDIA's MIG user guide, `nvidia-smi mig -lcip` on an A100-40GB 4g.20gb GI.
        let a100 = crate::Product::A100Sxm4_40GB;
        let gi = a100.resolve_profile("4g.20gb").unwrap();
        let rows: Vec<_> = a100
            .ci_profiles(gi)
            .iter()
            .map(|c| (c.nvml_name(gi), c.id, c.max_instances, c.sm_count))
            .collect();
        assert_eq!(
            rows,
            [
                ("MIG 1c.4g.20gb".to_string(), 0, 4, 14),
                ("MIG 2c.4g.20gb".to_string(), 1, 2, 28),
                ("MIG 4g.20gb".to_string(), 3, 1, 56),
            ]
        );
    }

    #[test]
    fn the_compute_instance_of_a_media_extended_gi_has_the_base_name() {
        let h100 = crate::Product::H100_80GB;
        let gi = h100.resolve_profile("1g.10gb+me").unwrap();
        let cis = h100.ci_profiles(gi);
        assert_eq!(cis.len(), 1);
        assert_eq!((cis[0].nvml_name(gi), cis[0].id), ("MIG 1g.10gb".to_string(), 0));
    }

    #[test]
    fn ci_profiles_of_a_3g_gi() {
        let gi = GiProfile {
            id: 9,
            nvml_index: 2,
            name: ProfileName::new(3, 40),
            compute_slices: 3,
            memory_slices: 4,
            sm_count: 60,
            memory_mib: 40448,
            max_instances: 2,
            engines: Engines::new(3, 3, 0, 3, 0),
            placement_starts: &[0, 4],
        };
        let one = GiProfile {
            id: 19,
            nvml_index: 0,
            name: ProfileName::new(1, 10),
            compute_slices: 1,
            memory_slices: 1,
            sm_count: 16,
            memory_mib: 9984,
            max_instances: 7,
            engines: Engines::new(1, 1, 0, 1, 0),
            placement_starts: &[0, 1, 2, 3, 4, 5, 6],
        };
        let cis = ci_profiles(&gi, &[one, gi]);
        let shapes: Vec<_> = cis
            .iter()
            .map(|c| {
                (
                    c.id,
                    c.compute_slices,
                    c.sm_count,
                    c.placement_starts.clone(),
                    c.name(&gi),
                )
            })
            .collect();
        assert_eq!(
            shapes,
            vec![
                (0, 1, 16, vec![0, 1, 2], "1c.3g.40gb".to_string()),
                (1, 2, 40, vec![0], "2c.3g.40gb".to_string()),
                (2, 3, 60, vec![0], "3g.40gb".to_string()),
            ]
        );
        assert_eq!(compute_instance_profile_slices(4), Some(7));
    }
}
