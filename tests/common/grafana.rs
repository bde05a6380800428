//! Reading the shipped Grafana dashboards as Grafana does: every panel
//! query, the template variables, and the text Grafana sends to Prometheus
//! once it has filled the variables in.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value as Json;

/// Grafana's built-in interval variables, as Grafana would fill them in for
/// a 1 s scrape interval over the last few minutes.
/// (Longer names first: `$__range_s` before `$__range`.)
const BUILT_INS: [(&str, &str); 5] = [
    ("$__rate_interval", "15s"),
    ("$__interval_ms", "5000"),
    ("$__interval", "5s"),
    ("$__range_s", "60"),
    ("$__range", "1m"),
];

pub struct Dashboard {
    /// The file name, e.g. `mig-fleet.json`.
    pub file: String,
    pub json: Json,
}

impl Dashboard {
    pub fn load(path: &Path) -> Dashboard {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Dashboard {
            file: path.file_name().unwrap().to_string_lossy().into_owned(),
            json,
        }
    }

    /// Every panel, those inside collapsed rows included, rows excluded.
    pub fn panels(&self) -> Vec<&Json> {
        fn walk<'a>(panels: &'a Json, out: &mut Vec<&'a Json>) {
            for p in panels.as_array().into_iter().flatten() {
                if p["type"] == "row" {
                    walk(&p["panels"], out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.json["panels"], &mut out);
        out
    }

    pub fn variables(&self) -> &Vec<Json> {
        self.json["templating"]["list"]
            .as_array()
            .expect("templating.list")
    }

    pub fn variable(&self, name: &str) -> &Json {
        self.variables()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{}: no `{name}` variable", self.file))
    }

    /// `(what, query)` of every template variable's definition ("variable")
    /// and every panel query (its panel's title).
    pub fn variable_and_panel_queries(&self) -> Vec<(String, String)> {
        let variables = self.variables().iter().map(|v| {
            (
                "variable".to_string(),
                v["definition"].as_str().unwrap_or_default().to_string(),
            )
        });
        let panels = self.queries().into_iter().map(|(title, _, expr)| (title, expr));
        variables.chain(panels).collect()
    }

    /// `(panel title, refId, expr)` of every panel query.
    pub fn queries(&self) -> Vec<(String, String, String)> {
        self.panels()
            .into_iter()
            .flat_map(|p| {
                let title = p["title"].as_str().unwrap_or_default().to_string();
                p["targets"].as_array().into_iter().flatten().map(move |t| {
                    (
                        title.clone(),
                        t["refId"].as_str().unwrap_or_default().to_string(),
                        t["expr"].as_str().unwrap_or_default().to_string(),
                    )
                })
            })
            .collect()
    }
}

/// Fills a query's template variables (`values`, by name) and Grafana's
/// interval variables in; a variable left over fails the test.
pub fn substitute(expr: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = expr.to_string();
    for (name, value) in BUILT_INS {
        out = out.replace(name, value);
    }
    // Longest names first, so that `$gpu` never eats the start of `$gpu_x`.
    let mut names: Vec<&String> = values.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        out = out
            .replace(&format!("${{{name}}}"), &values[name])
            .replace(&format!("${name}"), &values[name]);
    }
    assert!(!out.contains('$'), "a variable the test does not know in {expr}");
    out
}

/// A `label_values(selector, label)` variable as the instant query
/// `count by (label) (selector)` (variables filled in), and its label.
pub fn label_values_query(definition: &str, values: &BTreeMap<String, String>) -> (String, String) {
    let inner = definition
        .strip_prefix("label_values(")
        .and_then(|d| d.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values(selector, label): {definition}"));
    let (selector, label) = inner.rsplit_once(',').expect("label_values(selector, label)");
    let label = label.trim().to_string();
    (
        format!("count by ({label}) ({})", substitute(selector, values)),
        label,
    )
}
