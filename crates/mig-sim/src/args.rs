//! The command line, parsed by hand so that nvidia-smi's single-dash long
//! flags (`-cgi`, `-lgip`, `-mig`) work exactly as written.

use std::path::PathBuf;

use anyhow::Result;
use mig_model::{MigUuids, Product};

use crate::error::Failure;

/// Everything one invocation asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// `--world FILE`; `MIG_WORLD` is consulted only when this is absent.
    pub world: Option<PathBuf>,
    /// `-i GPU[,GPU...]`: indexes, GPU UUIDs or PCI bus ids, as nvidia-smi takes.
    pub gpus: Option<Vec<String>>,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Help(HelpTopic),
    Init(InitArgs),
    /// `-mig 0|1`
    SetMig {
        enabled: bool,
    },
    /// `-L`
    ListGpus,
    Mig(MigAction),
    Reboot,
    Clients {
        gpu: u32,
        count: u32,
    },
    Load(LoadArgs),
    Show,
    /// `products`: the compiled-in products; reads no World file.
    Products,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelpTopic {
    Main,
    Mig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InitArgs {
    pub file: PathBuf,
    pub gpus: u32,
    pub product: Product,
    pub hostname: String,
    pub mig: bool,
    pub force: bool,
    /// `--mig-uuids new|reused`: whether a recreated compute instance gets a new MIG UUID.
    pub mig_uuids: MigUuids,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MigAction {
    /// `-cgi LIST [-C]`
    CreateGi { profiles: Vec<String>, default_ci: bool },
    /// `-cci [LIST] -gi LIST`; `None` creates the default compute instance.
    CreateCi {
        profiles: Option<Vec<String>>,
        gis: Vec<u32>,
    },
    /// `-dci [-ci LIST] [-gi LIST]`
    DestroyCi {
        cis: Option<Vec<u32>>,
        gis: Option<Vec<u32>>,
    },
    /// `-dgi [-gi LIST]`
    DestroyGi { gis: Option<Vec<u32>> },
    /// `-lgi [-gi LIST]`
    ListGi { gis: Option<Vec<u32>> },
    /// `-lci [-gi LIST]`
    ListCi { gis: Option<Vec<u32>> },
    /// `-lgip`
    ListGip,
    /// `-lgipp`
    ListGipp,
    /// `-lcip [-gi LIST]`
    ListCip { gis: Option<Vec<u32>> },
}

impl MigAction {
    pub fn mutates(&self) -> bool {
        matches!(
            self,
            MigAction::CreateGi { .. }
                | MigAction::CreateCi { .. }
                | MigAction::DestroyCi { .. }
                | MigAction::DestroyGi { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadArgs {
    pub gpu: u32,
    pub gi: u32,
    pub ci: Option<u32>,
    pub sm_active: Option<f64>,
    pub sm_occupancy: Option<f64>,
    pub tensor_active: Option<f64>,
    pub dram_active: Option<f64>,
    pub fb_used_mib: Option<u64>,
}

impl LoadArgs {
    pub fn has_ci_fields(&self) -> bool {
        self.sm_active.is_some() || self.sm_occupancy.is_some() || self.tensor_active.is_some()
    }

    pub fn has_gi_fields(&self) -> bool {
        self.dram_active.is_some() || self.fb_used_mib.is_some()
    }
}

/// A cursor over the arguments that splits `--flag=value`.
struct Tokens {
    items: Vec<String>,
    pos: usize,
}

impl Tokens {
    fn new(items: Vec<String>) -> Self {
        Tokens { items, pos: 0 }
    }

    fn next(&mut self) -> Option<String> {
        let t = self.items.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn peek(&self) -> Option<&str> {
        self.items.get(self.pos).map(String::as_str)
    }

    /// The value of `flag`: the inline `=value` or the next argument.
    fn value(&mut self, flag: &str, inline: Option<String>) -> Result<String> {
        if let Some(v) = inline {
            return Ok(v);
        }
        match self.next() {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(Failure::usage(format!("option {flag} needs a value"))),
        }
    }
}

/// Splits `--name=value` (long options only; nvidia-smi flags take no `=`).
fn split_inline(arg: &str) -> (String, Option<String>) {
    if arg.starts_with("--") {
        if let Some((name, value)) = arg.split_once('=') {
            return (name.to_string(), Some(value.to_string()));
        }
    }
    (arg.to_string(), None)
}

fn no_inline(flag: &str, inline: &Option<String>) -> Result<()> {
    match inline {
        Some(v) => Err(Failure::usage(format!(
            "option {flag} takes no value (got '{v}')"
        ))),
        None => Ok(()),
    }
}

pub fn parse_u32(value: &str, what: &str) -> Result<u32> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Failure::usage(format!(
            "invalid value '{value}' for {what}: expected a whole number"
        )));
    }
    v.parse::<u32>()
        .map_err(|_| Failure::usage(format!("invalid value '{value}' for {what}: number too large")))
}

fn parse_u64(value: &str, what: &str) -> Result<u64> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Failure::usage(format!(
            "invalid value '{value}' for {what}: expected a whole number"
        )));
    }
    v.parse::<u64>()
        .map_err(|_| Failure::usage(format!("invalid value '{value}' for {what}: number too large")))
}

/// A ratio between 0 and 1 inclusive.
pub fn parse_ratio(value: &str, what: &str) -> Result<f64> {
    let v: f64 = value.trim().parse().map_err(|_| {
        Failure::usage(format!(
            "invalid value '{value}' for {what}: expected a number between 0 and 1"
        ))
    })?;
    if !v.is_finite() || !(0.0..=1.0).contains(&v) {
        return Err(Failure::usage(format!(
            "invalid value '{value}' for {what}: must be between 0 and 1"
        )));
    }
    Ok(v)
}

fn parse_switch(value: &str, what: &str) -> Result<bool> {
    match value.trim() {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(Failure::usage(format!(
            "invalid value '{value}' for {what}: expected 0 (disable) or 1 (enable)"
        ))),
    }
}

/// A comma-separated list; empty items are refused.
pub fn split_list(value: &str, what: &str) -> Result<Vec<String>> {
    let items: Vec<String> = value.split(',').map(|s| s.trim().to_string()).collect();
    if items.iter().any(String::is_empty) {
        return Err(Failure::usage(format!(
            "invalid list '{value}' for {what}: empty item"
        )));
    }
    Ok(items)
}

fn parse_id_list(value: &str, what: &str) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for item in split_list(value, what)? {
        let id = parse_u32(&item, what)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Parses the arguments after the program name.
pub fn parse(args: Vec<String>) -> Result<Invocation> {
    // Global options may stand before or after the command: take them out first.
    let mut world: Option<PathBuf> = None;
    let mut gpus: Option<Vec<String>> = None;
    let mut rest = Vec::new();
    let mut toks = Tokens::new(args);
    while let Some(arg) = toks.next() {
        let (name, inline) = split_inline(&arg);
        match name.as_str() {
            "--world" => {
                let v = toks.value("--world", inline)?;
                if world.replace(PathBuf::from(v)).is_some() {
                    return Err(Failure::usage("--world given more than once"));
                }
            }
            "-i" | "--id" => {
                let v = toks.value(&name, inline)?;
                let mut list = Vec::new();
                for item in split_list(&v, "-i")? {
                    if !list.contains(&item) {
                        list.push(item);
                    }
                }
                if gpus.replace(list).is_some() {
                    return Err(Failure::usage("-i given more than once"));
                }
            }
            _ => rest.push(arg),
        }
    }

    if rest.iter().any(|a| a == "-h" || a == "--help") {
        let topic = if rest.first().is_some_and(|a| a == "mig") {
            HelpTopic::Mig
        } else {
            HelpTopic::Main
        };
        return Ok(Invocation {
            world,
            gpus,
            command: Command::Help(topic),
        });
    }
    let mut toks = Tokens::new(rest);
    let Some(first) = toks.next() else {
        return Err(Failure::usage("no command given"));
    };
    let (name, inline) = split_inline(&first);
    let command = match name.as_str() {
        "-h" | "--help" | "help" => Command::Help(HelpTopic::Main),
        "-mig" | "--multi-instance-gpu" => {
            let v = toks.value(&name, inline)?;
            Command::SetMig {
                enabled: parse_switch(&v, &name)?,
            }
        }
        "-L" | "--list-gpus" => {
            no_inline(&name, &inline)?;
            Command::ListGpus
        }
        "init" => Command::Init(parse_init(&mut toks, world.take())?),
        "mig" => parse_mig(&mut toks)?,
        "reboot" => Command::Reboot,
        "show" => Command::Show,
        "products" => Command::Products,
        "clients" => parse_clients(&mut toks)?,
        "load" => Command::Load(parse_load(&mut toks)?),
        other if other.starts_with('-') => return Err(Failure::usage(format!("unknown option '{other}'"))),
        other => return Err(Failure::usage(format!("unknown command '{other}'"))),
    };
    if let Some(extra) = toks.next() {
        return Err(Failure::usage(format!("unexpected argument '{extra}'")));
    }
    let takes_gpus = matches!(
        command,
        Command::SetMig { .. } | Command::ListGpus | Command::Mig(_) | Command::Help(_)
    );
    if gpus.is_some() && !takes_gpus {
        return Err(Failure::usage(format!(
            "-i does not apply to '{first}'{}",
            match command {
                Command::Clients { .. } | Command::Load(_) => " (use --gpu)",
                _ => "",
            }
        )));
    }
    Ok(Invocation { world, gpus, command })
}

fn parse_init(toks: &mut Tokens, world: Option<PathBuf>) -> Result<InitArgs> {
    let mut file: Option<PathBuf> = None;
    let mut gpus: Option<u32> = None;
    let mut product: Option<Product> = None;
    let mut hostname: Option<String> = None;
    let mut mig = false;
    let mut force = false;
    let mut mig_uuids = MigUuids::default();
    while let Some(arg) = toks.next() {
        let (name, inline) = split_inline(&arg);
        match name.as_str() {
            "--gpus" => {
                let n = parse_u32(&toks.value(&name, inline)?, "--gpus")?;
                if !(1..=32).contains(&n) {
                    return Err(Failure::usage(format!(
                        "invalid value '{n}' for --gpus: must be between 1 and 32"
                    )));
                }
                gpus = Some(n);
            }
            "--product" => {
                let v = toks.value(&name, inline)?;
                product = Some(v.parse::<Product>().map_err(Failure::usage)?);
            }
            "--hostname" => {
                let v = toks.value(&name, inline)?;
                if v.trim().is_empty() || v.chars().any(char::is_whitespace) {
                    return Err(Failure::usage(format!(
                        "invalid value '{v}' for --hostname: must be one word"
                    )));
                }
                hostname = Some(v);
            }
            "--mig" => mig = parse_switch(&toks.value(&name, inline)?, "--mig")?,
            "--mig-uuids" => {
                mig_uuids = match toks.value(&name, inline)?.as_str() {
                    "new" => MigUuids::NewEachCreation,
                    "reused" => MigUuids::ReusedPerPlacement,
                    v => {
                        return Err(Failure::usage(format!(
                            "invalid value '{v}' for --mig-uuids: must be new or reused"
                        )))
                    }
                }
            }
            "--force" => {
                no_inline(&name, &inline)?;
                force = true;
            }
            other if other.starts_with('-') => {
                return Err(Failure::usage(format!("unknown option '{other}' for init")))
            }
            _ => {
                if file.replace(PathBuf::from(&arg)).is_some() {
                    return Err(Failure::usage(format!(
                        "init takes one FILE (got another: '{arg}')"
                    )));
                }
            }
        }
    }
    let file = match (file, world) {
        (Some(f), None) => f,
        (None, Some(w)) => w,
        (Some(f), Some(w)) if f == w => f,
        (Some(f), Some(w)) => {
            return Err(Failure::usage(format!(
                "init got two files: '{}' and --world '{}'",
                f.display(),
                w.display()
            )))
        }
        (None, None) => return Err(Failure::usage("init needs the World FILE to create")),
    };
    Ok(InitArgs {
        file,
        gpus: gpus.ok_or_else(|| Failure::usage("init needs --gpus N"))?,
        product: product.ok_or_else(|| {
            Failure::usage(format!(
                "init needs --product NAME (one of: {})",
                Product::ALL.map(|p| p.slug()).join(", ")
            ))
        })?,
        hostname: hostname.unwrap_or_else(|| "sim-node".to_string()),
        mig,
        force,
        mig_uuids,
    })
}

fn parse_mig(toks: &mut Tokens) -> Result<Command> {
    #[derive(PartialEq)]
    enum Act {
        Cgi,
        Cci,
        Dci,
        Dgi,
        Lgi,
        Lci,
        Lgip,
        Lgipp,
        Lcip,
    }
    let mut action: Option<(Act, String)> = None;
    let mut set = |act: Act, flag: &str| -> Result<()> {
        if let Some((_, prev)) = &action {
            return Err(Failure::usage(format!(
                "mig takes one operation: {prev} and {flag} given"
            )));
        }
        action = Some((act, flag.to_string()));
        Ok(())
    };
    let mut cgi: Option<Vec<String>> = None;
    let mut cci: Option<Vec<String>> = None;
    let mut default_ci = false;
    let mut gis: Option<Vec<u32>> = None;
    let mut cis: Option<Vec<u32>> = None;
    while let Some(arg) = toks.next() {
        let (name, inline) = split_inline(&arg);
        match name.as_str() {
            "-cgi" | "--create-gpu-instance" => {
                set(Act::Cgi, &name)?;
                let v = toks.value(&name, inline)?;
                cgi = Some(split_list(&v, &name)?);
            }
            "-C" | "--default-compute-instance" => {
                no_inline(&name, &inline)?;
                default_ci = true;
            }
            "-cci" | "--create-compute-instance" => {
                set(Act::Cci, &name)?;
                // The profile list is optional: `-cci -gi 1` creates the default CI.
                let v = match inline {
                    Some(v) => Some(v),
                    None => match toks.peek() {
                        Some(next) if !next.starts_with('-') => toks.next(),
                        _ => None,
                    },
                };
                if let Some(v) = v {
                    cci = Some(split_list(&v, &name)?);
                }
            }
            "-dci" | "--destroy-compute-instance" => {
                no_inline(&name, &inline)?;
                set(Act::Dci, &name)?;
            }
            "-dgi" | "--destroy-gpu-instance" => {
                no_inline(&name, &inline)?;
                set(Act::Dgi, &name)?;
            }
            "-lgi" | "--list-gpu-instances" => {
                no_inline(&name, &inline)?;
                set(Act::Lgi, &name)?;
            }
            "-lci" | "--list-compute-instances" => {
                no_inline(&name, &inline)?;
                set(Act::Lci, &name)?;
            }
            "-lgip" | "--list-gpu-instance-profiles" => {
                no_inline(&name, &inline)?;
                set(Act::Lgip, &name)?;
            }
            "-lgipp" | "--list-gpu-instance-possible-placements" => {
                no_inline(&name, &inline)?;
                set(Act::Lgipp, &name)?;
            }
            "-lcip" | "--list-compute-instance-profiles" => {
                no_inline(&name, &inline)?;
                set(Act::Lcip, &name)?;
            }
            "-gi" | "--gpu-instance-id" => {
                let v = toks.value(&name, inline)?;
                if gis.replace(parse_id_list(&v, "-gi")?).is_some() {
                    return Err(Failure::usage("-gi given more than once"));
                }
            }
            "-ci" | "--compute-instance-id" => {
                let v = toks.value(&name, inline)?;
                if cis.replace(parse_id_list(&v, "-ci")?).is_some() {
                    return Err(Failure::usage("-ci given more than once"));
                }
            }
            other if other.starts_with('-') => {
                return Err(Failure::usage(format!("unknown option '{other}' for mig")))
            }
            other => return Err(Failure::usage(format!("unexpected argument '{other}' for mig"))),
        }
    }
    let Some((act, flag)) = action else {
        return Err(Failure::usage(
            "mig needs an operation: -cgi, -cci, -dci, -dgi, -lgi, -lci, -lgip, -lgipp or -lcip",
        ));
    };
    if default_ci && act != Act::Cgi {
        return Err(Failure::usage(format!("-C applies to -cgi only, not to {flag}")));
    }
    if cis.is_some() && act != Act::Dci {
        return Err(Failure::usage(format!("-ci applies to -dci only, not to {flag}")));
    }
    if gis.is_some() && matches!(act, Act::Cgi | Act::Lgip | Act::Lgipp) {
        return Err(Failure::usage(format!("-gi does not apply to {flag}")));
    }
    let action = match act {
        Act::Cgi => MigAction::CreateGi {
            profiles: cgi.unwrap_or_default(),
            default_ci,
        },
        Act::Cci => MigAction::CreateCi {
            profiles: cci,
            gis: gis.ok_or_else(|| {
                Failure::usage("-cci needs -gi GI[,GI...]: the GPU instances to create compute instances in")
            })?,
        },
        Act::Dci => MigAction::DestroyCi { cis, gis },
        Act::Dgi => MigAction::DestroyGi { gis },
        Act::Lgi => MigAction::ListGi { gis },
        Act::Lci => MigAction::ListCi { gis },
        Act::Lgip => MigAction::ListGip,
        Act::Lgipp => MigAction::ListGipp,
        Act::Lcip => MigAction::ListCip { gis },
    };
    Ok(Command::Mig(action))
}

fn parse_clients(toks: &mut Tokens) -> Result<Command> {
    let mut gpu = None;
    let mut count = None;
    while let Some(arg) = toks.next() {
        let (name, inline) = split_inline(&arg);
        match name.as_str() {
            "--gpu" => gpu = Some(parse_u32(&toks.value(&name, inline)?, "--gpu")?),
            "--count" => count = Some(parse_u32(&toks.value(&name, inline)?, "--count")?),
            other => return Err(Failure::usage(format!("unknown argument '{other}' for clients"))),
        }
    }
    Ok(Command::Clients {
        gpu: gpu.ok_or_else(|| Failure::usage("clients needs --gpu N"))?,
        count: count.ok_or_else(|| Failure::usage("clients needs --count N"))?,
    })
}

fn parse_load(toks: &mut Tokens) -> Result<LoadArgs> {
    let mut gpu = None;
    let mut gi = None;
    let mut l = LoadArgs::default();
    while let Some(arg) = toks.next() {
        let (name, inline) = split_inline(&arg);
        let flag = name.as_str();
        match flag {
            "--gpu" => gpu = Some(parse_u32(&toks.value(flag, inline)?, flag)?),
            "--gi" => gi = Some(parse_u32(&toks.value(flag, inline)?, flag)?),
            "--ci" => l.ci = Some(parse_u32(&toks.value(flag, inline)?, flag)?),
            "--sm-active" => l.sm_active = Some(parse_ratio(&toks.value(flag, inline)?, flag)?),
            "--sm-occupancy" => l.sm_occupancy = Some(parse_ratio(&toks.value(flag, inline)?, flag)?),
            "--tensor-active" => l.tensor_active = Some(parse_ratio(&toks.value(flag, inline)?, flag)?),
            "--dram-active" => l.dram_active = Some(parse_ratio(&toks.value(flag, inline)?, flag)?),
            "--fb-used-mib" => l.fb_used_mib = Some(parse_u64(&toks.value(flag, inline)?, flag)?),
            other => return Err(Failure::usage(format!("unknown argument '{other}' for load"))),
        }
    }
    l.gpu = gpu.ok_or_else(|| Failure::usage("load needs --gpu N"))?;
    l.gi = gi.ok_or_else(|| Failure::usage("load needs --gi GI"))?;
    if !l.has_ci_fields() && !l.has_gi_fields() {
        return Err(Failure::usage(
            "load needs at least one of --sm-active, --sm-occupancy, --tensor-active, --dram-active, --fb-used-mib",
        ));
    }
    Ok(l)
}

pub const HELP: &str = "\
mig-sim: an nvidia-smi-like CLI over a mig-model World file

The World file is given by --world FILE (before or after the command) or the
MIG_WORLD environment variable. Every change is written atomically, and only
when the whole command succeeds.

Usage:
  mig-sim init --gpus N --product NAME [--hostname NAME] [--mig 0|1]
               [--mig-uuids new|reused] [--force] FILE
  mig-sim [-i GPU[,GPU...]] -mig 0|1
  mig-sim [-i GPU[,GPU...]] -L
  mig-sim [-i GPU[,GPU...]] mig OPERATION ...      (see 'mig-sim mig --help')
  mig-sim reboot
  mig-sim clients --gpu N --count N
  mig-sim load --gpu N --gi GI [--ci CI] [--sm-active R] [--sm-occupancy R]
               [--tensor-active R] [--dram-active R] [--fb-used-mib MIB]
  mig-sim show
  mig-sim products

GPU is an index, a GPU UUID or a PCI bus id. Without -i, every GPU.
'mig-sim products' lists every product init takes (--product NAME), with its
NVML name, PCI device id and architecture; it needs no World file.
--mig-uuids reused: a compute instance created again where one was (same GPU
instance placement, same compute instance id) gets that one's MIG UUID back,
as some drivers do; new (the default): a new MIG UUID for every creation.
";

pub const MIG_HELP: &str = "\
mig-sim [-i GPU[,GPU...]] mig OPERATION

Operations:
  -cgi LIST [-C]          create GPU instances (profile ids or names, e.g. 9,19,3g.40gb);
                          -C also creates each one's default compute instance
  -cci [LIST] -gi LIST    create compute instances (profile ids or names; default profile if none)
  -dci [-ci LIST] [-gi LIST]  destroy compute instances (all when not named)
  -dgi [-gi LIST]         destroy GPU instances (refused while compute instances exist)
  -lgi [-gi LIST]         list GPU instances
  -lci [-gi LIST]         list compute instances
  -lgip                   list GPU instance profiles
  -lgipp                  list GPU instance possible placements
  -lcip [-gi LIST]        list compute instance profiles
";

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Invocation> {
        parse(args.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn global_options_stand_before_or_after_the_command() {
        let a = p(&["--world", "w.json", "-i", "0,1", "mig", "-cgi", "9,19", "-C"]).unwrap();
        let b = p(&["mig", "-cgi", "9,19", "-C", "-i", "0,1", "--world=w.json"]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.world, Some(PathBuf::from("w.json")));
        assert_eq!(a.gpus, Some(vec!["0".to_string(), "1".to_string()]));
        assert_eq!(
            a.command,
            Command::Mig(MigAction::CreateGi {
                profiles: vec!["9".into(), "19".into()],
                default_ci: true
            })
        );
    }

    #[test]
    fn cci_profile_list_is_optional() {
        let a = p(&["mig", "-cci", "-gi", "1,2"]).unwrap();
        assert_eq!(
            a.command,
            Command::Mig(MigAction::CreateCi {
                profiles: None,
                gis: vec![1, 2]
            })
        );
        let a = p(&["mig", "-cci", "0,0", "-gi", "2"]).unwrap();
        assert_eq!(
            a.command,
            Command::Mig(MigAction::CreateCi {
                profiles: Some(vec!["0".into(), "0".into()]),
                gis: vec![2]
            })
        );
        assert!(p(&["mig", "-cci", "0"]).is_err(), "-gi is required");
    }

    #[test]
    fn refuses_malformed_input() {
        for bad in [
            &["-mig", "2"][..],
            &["-mig"],
            &["mig"],
            &["mig", "-cgi"],
            &["mig", "-cgi", "9,,19"],
            &["mig", "-lgi", "-lci"],
            &["mig", "-lgi", "-C"],
            &["mig", "-dci", "-ci", "x"],
            &["mig", "-lgi", "--bogus"],
            &["frobnicate"],
            &["load", "--gpu", "0", "--gi", "1", "--sm-active", "1.5"],
            &["load", "--gpu", "0", "--gi", "1", "--sm-active", "NaN"],
            &["load", "--gpu", "0", "--gi", "1"],
            &["load", "--gpu", "-1", "--gi", "1", "--dram-active", "0.1"],
            &["init", "--gpus", "0", "--product", "h100-80gb", "f"],
            &["init", "--gpus", "8", "--product", "h100", "f"],
            &["init", "--gpus", "8", "--product", "h100-80gb"],
            &["-i", "0", "reboot"],
            &["show", "extra"],
            &["products", "extra"],
            &["-i", "0", "products"],
        ] {
            let e = p(bad).unwrap_err();
            let f = e.downcast_ref::<Failure>().unwrap();
            assert_eq!(f.code, crate::error::EXIT_USAGE, "{bad:?}: {f}");
        }
    }

    #[test]
    fn ratios_are_checked() {
        assert_eq!(parse_ratio("0.7", "x").unwrap(), 0.7);
        assert_eq!(parse_ratio("1", "x").unwrap(), 1.0);
        let e = parse_ratio("-0.1", "--dram-active").unwrap_err().to_string();
        assert!(e.contains("'-0.1'") && e.contains("--dram-active"), "{e}");
    }
}
