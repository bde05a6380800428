//! nvidia-smi's MIG tables and lines, column for column.
//!
//! The `-lgip` layout is the one a real H100 80GB HBM3 printed with driver
//! 580.159.04 (`shared/fixtures/h100-80gb-hbm3-real/probe.txt`): its Name
//! column is two characters wider than in older drivers. `-lgi` is widened the
//! same way (59 columns, as listings from recent H100 drivers show); `-lci` and
//! `-lcip` keep the layout of NVIDIA's MIG user guide (70 and 88 columns).
//! A value wider than its column pushes the rest of the row along, as printf does.

/// One `-lgip` row: a GPU-instance profile and how many more of it fit.
#[derive(Debug, Clone, PartialEq)]
pub struct GipRow {
    pub gpu: u32,
    /// NVML's name, `MIG 1g.10gb`.
    pub name: String,
    pub id: u32,
    pub free: u32,
    pub total: u32,
    pub memory_mib: u64,
    pub p2p: bool,
    pub sm: u32,
    pub dec: u32,
    pub enc: u32,
    pub ce: u32,
    pub jpeg: u32,
    pub ofa: u32,
}

/// One `-lgi` row.
#[derive(Debug, Clone, PartialEq)]
pub struct GiRow {
    pub gpu: u32,
    pub name: String,
    pub profile_id: u32,
    pub gi: u32,
    /// `start:size`
    pub placement: String,
}

/// One `-lci` row.
#[derive(Debug, Clone, PartialEq)]
pub struct CiRow {
    pub gpu: u32,
    pub gi: u32,
    pub name: String,
    pub profile_id: u32,
    pub ci: u32,
    pub placement: String,
}

/// One `-lcip` row: a compute-instance profile of one GPU instance.
#[derive(Debug, Clone, PartialEq)]
pub struct CipRow {
    pub gpu: u32,
    pub gi: u32,
    pub name: String,
    pub id: u32,
    /// The profile `-cgi -C` and `-cci` without ids use, marked `*`.
    pub default: bool,
    pub free: u32,
    pub total: u32,
    pub sm: u32,
    pub dec: u32,
    pub enc: u32,
    pub ofa: u32,
    pub ce: u32,
    pub jpeg: u32,
}

fn rule(width: usize) -> String {
    format!("+{}+\n", "-".repeat(width - 2))
}

/// Memory in GiB with two decimals; Rust rounds ties to even like glibc's
/// printf, so 20096 MiB prints as 19.62 as on the real GPU.
pub fn gib(memory_mib: u64) -> String {
    format!("{:.2}", memory_mib as f64 / 1024.0)
}

const GIP_WIDTH: usize = 81;

pub fn gip_table(rows: &[GipRow]) -> String {
    let mut out = rule(GIP_WIDTH);
    out.push_str("| GPU instance profiles:                                                        |\n");
    out.push_str("| GPU   Name               ID    Instances   Memory     P2P    SM    DEC   ENC  |\n");
    out.push_str("|                                Free/Total   GiB              CE    JPEG  OFA  |\n");
    out.push_str(&format!("|{}|\n", "=".repeat(GIP_WIDTH - 2)));
    for r in rows {
        out.push_str(&format!(
            "|{:>4}  {:<19}{:>3}{:>6}/{:<3}      {:<11}{:<7}{:<7}{:<6}{:<4}|\n",
            r.gpu,
            r.name,
            r.id,
            r.free,
            r.total,
            gib(r.memory_mib),
            if r.p2p { "Yes" } else { "No" },
            r.sm,
            r.dec,
            r.enc,
        ));
        out.push_str(&format!("|{:62}{:>2}{:>6}{:>6}   |\n", "", r.ce, r.jpeg, r.ofa));
        out.push_str(&rule(GIP_WIDTH));
    }
    out
}

/// `-lgipp`: `GPU  0 Profile ID 19 Placements: {0,1,2,3,4,5,6}:1`, or
/// `Placement :` when there is only one.
pub fn gipp_line(gpu: u32, profile_id: u32, starts: &[u32], size: u32) -> String {
    let list = starts.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let label = if starts.len() == 1 {
        "Placement :"
    } else {
        "Placements:"
    };
    format!("GPU {gpu:>2} Profile ID {profile_id:>2} {label} {{{list}}}:{size}\n")
}

const GI_WIDTH: usize = 59;

pub fn gi_table(rows: &[GiRow]) -> String {
    let mut out = rule(GI_WIDTH);
    out.push_str("| GPU instances:                                          |\n");
    out.push_str("| GPU   Name               Profile  Instance   Placement  |\n");
    out.push_str("|                            ID       ID       Start:Size |\n");
    out.push_str(&format!("|{}|\n", "=".repeat(GI_WIDTH - 2)));
    for r in rows {
        out.push_str(&format!(
            "|{:>4}  {:<19}{:>5}{:>9}{:>13}     |\n",
            r.gpu, r.name, r.profile_id, r.gi, r.placement
        ));
        out.push_str(&rule(GI_WIDTH));
    }
    out
}

const CI_WIDTH: usize = 70;

pub fn ci_table(rows: &[CiRow]) -> String {
    let mut out = rule(CI_WIDTH);
    out.push_str("| Compute instances:                                                 |\n");
    out.push_str("| GPU     GPU       Name             Profile   Instance   Placement  |\n");
    out.push_str("|       Instance                       ID        ID       Start:Size |\n");
    out.push_str("|         ID                                                         |\n");
    out.push_str(&format!("|{}|\n", "=".repeat(CI_WIDTH - 2)));
    for r in rows {
        out.push_str(&format!(
            "|{:>4}{:>7}       {:<17}{:>5}{:>10}{:>13}     |\n",
            r.gpu, r.gi, r.name, r.profile_id, r.ci, r.placement
        ));
        out.push_str(&rule(CI_WIDTH));
    }
    out
}

const CIP_WIDTH: usize = 88;

pub fn cip_table(rows: &[CipRow]) -> String {
    let mut out = rule(CIP_WIDTH);
    out.push_str(
        "| Compute instance profiles:                                                           |\n",
    );
    out.push_str(
        "| GPU     GPU       Name             Profile  Instances   Exclusive       Shared       |\n",
    );
    out.push_str(
        "|       Instance                       ID     Free/Total     SM       DEC   ENC   OFA  |\n",
    );
    out.push_str(
        "|         ID                                                          CE    JPEG       |\n",
    );
    out.push_str(&format!("|{}|\n", "=".repeat(CIP_WIDTH - 2)));
    for r in rows {
        out.push_str(&format!(
            "|{:>4}{:>7}       {:<17}{:>5}{}{:>6}/{:<3}{:>11}{:>9}{:>6}{:>6}   |\n",
            r.gpu,
            r.gi,
            r.name,
            r.id,
            if r.default { '*' } else { ' ' },
            r.free,
            r.total,
            r.sm,
            r.dec,
            r.enc,
            r.ofa,
        ));
        out.push_str(&format!("|{:62}{:>9}{:>6}{:9}|\n", "", r.ce, r.jpeg, ""));
        out.push_str(&rule(CIP_WIDTH));
    }
    out
}

/// `nvidia-smi -L`'s line for one MIG device.
pub fn mig_device_line(profile: &str, device: u32, uuid: &str) -> String {
    format!("  MIG {profile:<11} Device {device:>2}: (UUID: {uuid})\n")
}

/// `mig-sim products`: every compiled-in product, one per line. nvidia-smi has
/// no such command, so this is mig-sim's own layout: left-aligned columns two
/// spaces apart, the PCI device id as NVML's `pciDeviceId` (device id in the
/// high half, vendor 10DE in the low half), as mig-parted's device filters write it.
pub fn products_table(products: &[mig_model::Product]) -> String {
    let header = ["PRODUCT", "NVML NAME", "PCI DEVICE ID", "ARCHITECTURE"];
    let rows: Vec<[String; 4]> = products
        .iter()
        .map(|p| {
            let spec = p.spec();
            [
                spec.slug.to_string(),
                spec.name.to_string(),
                format!("0x{:08X}", spec.pci_device_id),
                spec.architecture.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 4]| {
        let text = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        format!("{}\n", text.trim_end())
    };
    let mut out = line(header);
    for row in &rows {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3]]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nvidia-smi mig -lgip` on an empty H100 80GB HBM3, driver 580.159.04
    /// (shared/fixtures/h100-80gb-hbm3-real/probe.txt), first two profiles.
    const H100_LGIP_HEAD: &str = "\
+-------------------------------------------------------------------------------+
| GPU instance profiles:                                                        |
| GPU   Name               ID    Instances   Memory     P2P    SM    DEC   ENC  |
|                                Free/Total   GiB              CE    JPEG  OFA  |
|===============================================================================|
|   0  MIG 1g.10gb         19     7/7        9.75       No     16     1     0   |
|                                                               1     1     0   |
+-------------------------------------------------------------------------------+
|   0  MIG 7g.80gb          0     1/1        79.25      No     132    7     0   |
|                                                               8     7     1   |
+-------------------------------------------------------------------------------+
";

    #[test]
    fn gip_table_matches_the_real_h100_layout() {
        let rows = [
            GipRow {
                gpu: 0,
                name: "MIG 1g.10gb".into(),
                id: 19,
                free: 7,
                total: 7,
                memory_mib: 9984,
                p2p: false,
                sm: 16,
                dec: 1,
                enc: 0,
                ce: 1,
                jpeg: 1,
                ofa: 0,
            },
            GipRow {
                gpu: 0,
                name: "MIG 7g.80gb".into(),
                id: 0,
                free: 1,
                total: 1,
                memory_mib: 81152,
                p2p: false,
                sm: 132,
                dec: 7,
                enc: 0,
                ce: 8,
                jpeg: 7,
                ofa: 1,
            },
        ];
        assert_eq!(gip_table(&rows), H100_LGIP_HEAD);
        assert_eq!(gib(20096), "19.62");
        assert_eq!(gib(40448), "39.50");
    }

    #[test]
    fn gipp_lines_match_the_real_ones() {
        assert_eq!(
            gipp_line(0, 19, &[0, 1, 2, 3, 4, 5, 6], 1),
            "GPU  0 Profile ID 19 Placements: {0,1,2,3,4,5,6}:1\n"
        );
        assert_eq!(
            gipp_line(0, 9, &[0, 4], 4),
            "GPU  0 Profile ID  9 Placements: {0,4}:4\n"
        );
        assert_eq!(
            gipp_line(0, 0, &[0], 8),
            "GPU  0 Profile ID  0 Placement : {0}:8\n"
        );
    }

    #[test]
    fn gi_table_rows_line_up_with_the_header() {
        let t = gi_table(&[GiRow {
            gpu: 0,
            name: "MIG 1g.10gb".into(),
            profile_id: 19,
            gi: 13,
            placement: "6:1".into(),
        }]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines.iter().all(|l| l.len() == GI_WIDTH), "{t}");
        assert_eq!(
            lines[5],
            "|   0  MIG 1g.10gb           19       13          6:1     |"
        );
    }

    /// Rows from NVIDIA's MIG user guide (A100 40GB), `-lci` and `-lcip`.
    #[test]
    fn ci_and_cip_tables_match_the_user_guide() {
        let t = ci_table(&[CiRow {
            gpu: 0,
            gi: 2,
            name: "MIG 1c.3g.20gb".into(),
            profile_id: 0,
            ci: 1,
            placement: "1:1".into(),
        }]);
        assert_eq!(
            t,
            "\
+--------------------------------------------------------------------+
| Compute instances:                                                 |
| GPU     GPU       Name             Profile   Instance   Placement  |
|       Instance                       ID        ID       Start:Size |
|         ID                                                         |
|====================================================================|
|   0      2       MIG 1c.3g.20gb       0         1          1:1     |
+--------------------------------------------------------------------+
"
        );
        let row = |name: &str, id, default, free, total, sm| CipRow {
            gpu: 0,
            gi: 2,
            name: name.into(),
            id,
            default,
            free,
            total,
            sm,
            dec: 2,
            enc: 0,
            ofa: 0,
            ce: 3,
            jpeg: 0,
        };
        let t = cip_table(&[
            row("MIG 1c.3g.20gb", 0, false, 3, 3, 14),
            row("MIG 3g.20gb", 2, true, 1, 1, 42),
        ]);
        assert_eq!(
            t,
            "\
+--------------------------------------------------------------------------------------+
| Compute instance profiles:                                                           |
| GPU     GPU       Name             Profile  Instances   Exclusive       Shared       |
|       Instance                       ID     Free/Total     SM       DEC   ENC   OFA  |
|         ID                                                          CE    JPEG       |
|======================================================================================|
|   0      2       MIG 1c.3g.20gb       0      3/3           14        2     0     0   |
|                                                                      3     0         |
+--------------------------------------------------------------------------------------+
|   0      2       MIG 3g.20gb          2*     1/1           42        2     0     0   |
|                                                                      3     0         |
+--------------------------------------------------------------------------------------+
"
        );
    }

    #[test]
    fn products_table_aligns_columns_and_writes_ids_as_device_filters_do() {
        use mig_model::Product;
        let t = products_table(&[Product::A30_24GB, Product::H100_80GB]);
        assert_eq!(
            t,
            "\
PRODUCT    NVML NAME              PCI DEVICE ID  ARCHITECTURE
a30-24gb   NVIDIA A30             0x20B710DE     Ampere
h100-80gb  NVIDIA H100 80GB HBM3  0x233010DE     Hopper
"
        );
    }

    #[test]
    fn mig_device_lines_match_nvidia_smi_l() {
        assert_eq!(
            mig_device_line("1g.5gb", 0, "MIG-x"),
            "  MIG 1g.5gb      Device  0: (UUID: MIG-x)\n"
        );
    }
}
