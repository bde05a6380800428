//! `mig-sim`: an nvidia-smi-like CLI over a mig-model World file.
//!
//! ```text
//! mig-sim init --gpus 8 --product h100-80gb world.json
//! export MIG_WORLD=world.json
//! mig-sim -i 0 -mig 1
//! mig-sim -i 0 mig -cgi 9,19 -C
//! mig-sim mig -lgi
//! ```
//!
//! A command that changes the World loads the file, applies the whole
//! operation and writes the file atomically only if every part succeeded.

mod args;
mod error;
mod ops;
mod render;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use mig_model::{World, WorldFileError, WORLD_ENV};

use args::{Command, HelpTopic, InitArgs, Invocation};
use error::{Failure, EXIT_WORLD_FILE};
use ops::Selection;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match run(args) {
        Ok(out) => {
            // A closed pipe (`mig-sim show | head`) is not worth a panic.
            let _ = std::io::stdout().lock().write_all(out.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = exit_status(&e);
            let message = match e.downcast_ref::<Failure>() {
                Some(f) => f.message.clone(),
                None => format!("mig-sim: {e:#}"),
            };
            let _ = writeln!(std::io::stderr().lock(), "{message}");
            ExitCode::from(code)
        }
    }
}

fn exit_status(e: &anyhow::Error) -> u8 {
    if let Some(f) = e.downcast_ref::<Failure>() {
        return f.code;
    }
    // World file errors (unreadable, malformed, unwritable) and anything else.
    EXIT_WORLD_FILE
}

fn run(raw: Vec<OsString>) -> Result<String> {
    let mut args = Vec::with_capacity(raw.len());
    for a in raw {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(bad) => {
                return Err(Failure::usage(format!(
                    "argument '{}' is not valid UTF-8",
                    bad.to_string_lossy()
                )))
            }
        }
    }
    let inv = args::parse(args)?;
    match inv.command {
        Command::Help(HelpTopic::Main) => Ok(args::HELP.to_string()),
        Command::Help(HelpTopic::Mig) => Ok(args::MIG_HELP.to_string()),
        Command::Init(ref a) => init(a),
        Command::Products => Ok(render::products_table(&mig_model::Product::ALL)),
        _ => on_world(inv),
    }
}

/// `--world FILE`, else `$MIG_WORLD`.
fn world_path(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p);
    }
    match std::env::var_os(WORLD_ENV) {
        Some(v) if !v.is_empty() => Ok(PathBuf::from(v)),
        _ => Err(Failure::usage(format!(
            "no World file: pass --world FILE or set {WORLD_ENV}"
        ))),
    }
}

fn init(a: &InitArgs) -> Result<String> {
    if !a.force && std::fs::symlink_metadata(&a.file).is_ok() {
        return Err(Failure::error(
            EXIT_WORLD_FILE,
            format!(
                "mig-sim: {} already exists; pass --force to replace it",
                a.file.display()
            ),
        ));
    }
    let mut world = World::new(&a.hostname, a.product, a.gpus);
    for gpu in &mut world.gpus {
        gpu.mig_uuids = a.mig_uuids;
    }
    if a.mig {
        for gpu in &mut world.gpus {
            gpu.set_mig_mode(true);
        }
    }
    save(&world, &a.file)?;
    let spec = a.product.spec();
    Ok(format!(
        "Created World {}: host {}, {} x {} ({}), MIG mode {}\n",
        a.file.display(),
        a.hostname,
        a.gpus,
        spec.name,
        a.product,
        if world.gpus.iter().all(|g| g.mig.current) {
            "Enabled"
        } else {
            "Disabled"
        }
    ))
}

/// Validates before writing: a World the model itself made inconsistent is
/// a bug, and must not reach the file the fakes read.
fn save(world: &World, path: &Path) -> Result<()> {
    world.validate().map_err(|problem| {
        Failure::error(
            255,
            format!(
                "mig-sim: internal error: the result is not a consistent World ({problem}); {} was not changed",
                path.display()
            ),
        )
    })?;
    world
        .save(path)
        .map_err(|e: WorldFileError| Failure::error(EXIT_WORLD_FILE, format!("mig-sim: {e}")))
}

fn on_world(inv: Invocation) -> Result<String> {
    let path = world_path(inv.world)?;
    let mut world =
        World::load(&path).map_err(|e| Failure::error(EXIT_WORLD_FILE, format!("mig-sim: {e}")))?;
    let before = world.clone();
    let mutates = match &inv.command {
        Command::SetMig { .. } | Command::Reboot | Command::Clients { .. } | Command::Load(_) => true,
        Command::Mig(a) => a.mutates(),
        _ => false,
    };
    let result = (|| -> Result<String> {
        let sel = Selection::resolve(&world, &path, inv.gpus.as_deref())?;
        match &inv.command {
            Command::SetMig { enabled } => ops::set_mig(&mut world, &sel, *enabled),
            Command::ListGpus => ops::list_gpus(&world, &sel),
            Command::Mig(action) => ops::mig(&mut world, &sel, action),
            Command::Reboot => Ok(ops::reboot(&mut world)),
            Command::Clients { gpu, count } => ops::clients(&mut world, &path, *gpu, *count),
            Command::Load(l) => ops::load(&mut world, &path, l),
            Command::Show => Ok(world.to_json()),
            Command::Help(_) | Command::Init(_) | Command::Products => Ok(String::new()),
        }
    })();
    match result {
        Ok(out) => {
            if world != before {
                save(&world, &path)?;
            }
            Ok(out)
        }
        Err(e) if mutates => {
            // Say plainly that nothing was applied: nvidia-smi would have kept
            // the items before the refusal, mig-sim keeps none.
            let (code, message) = match e.downcast_ref::<Failure>() {
                Some(f) => (f.code, f.message.clone()),
                None => (EXIT_WORLD_FILE, format!("mig-sim: {e:#}")),
            };
            Err(Failure::error(
                code,
                format!("{message}\nmig-sim: nothing was changed in {}", path.display()),
            ))
        }
        Err(e) => Err(e),
    }
}
