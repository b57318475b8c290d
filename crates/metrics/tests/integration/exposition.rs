//! A strict reader of the Prometheus text exposition format (version
//! 0.0.4), so tests check the output line by line rather than by substring.

use std::collections::{BTreeMap, HashMap, HashSet};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One family: its `# HELP`, its `# TYPE` and its samples.
#[derive(Debug, Clone, Default)]
pub struct Family {
    pub help: String,
    pub kind: String,
    pub samples: Vec<Sample>,
}

/// A parsed, checked exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    pub families: BTreeMap<String, Family>,
}

impl Exposition {
    /// Parses `text`, panicking with the line number on the first line that
    /// breaks the format, and checks the histogram invariants.
    pub fn parse(text: &str) -> Exposition {
        let mut exposition = Exposition::default();
        let mut current: Option<String> = None;
        let mut seen_series = HashSet::new();
        let mut helped = HashSet::new();
        for (number, line) in text.lines().enumerate() {
            let at = |what: &str| format!("line {}: {what}: {line:?}", number + 1);
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                assert!(is_metric_name(name), "{}", at("bad metric name in HELP"));
                assert!(
                    helped.insert(name.to_owned()),
                    "{}",
                    at("second HELP for a family")
                );
                assert!(
                    !exposition.families.contains_key(name),
                    "{}",
                    at("HELP after the family's TYPE")
                );
                let family = Family {
                    help: unescape(help, false)
                        .unwrap_or_else(|| panic!("{}", at("bad HELP escape"))),
                    ..Family::default()
                };
                exposition.families.insert(format!("\0{name}"), family);
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("{}", at("TYPE without a type")));
                assert!(is_metric_name(name), "{}", at("bad metric name in TYPE"));
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{}",
                    at("unknown type")
                );
                let mut family = exposition
                    .families
                    .remove(&format!("\0{name}"))
                    .unwrap_or_else(|| panic!("{}", at("TYPE without a HELP before it")));
                assert!(
                    !exposition.families.contains_key(name),
                    "{}",
                    at("second TYPE for a family")
                );
                family.kind = kind.to_owned();
                exposition.families.insert(name.to_owned(), family);
                current = Some(name.to_owned());
                continue;
            }
            assert!(!line.starts_with('#'), "{}", at("unknown comment line"));
            assert!(!line.is_empty(), "{}", at("empty line"));
            let sample = parse_sample(line).unwrap_or_else(|| panic!("{}", at("malformed sample")));
            let family_name = current
                .as_deref()
                .unwrap_or_else(|| panic!("{}", at("sample before any TYPE")));
            let family = exposition
                .families
                .get_mut(family_name)
                .expect("current family exists");
            let suffix_ok = match family.kind.as_str() {
                "histogram" => [
                    format!("{family_name}_bucket"),
                    format!("{family_name}_sum"),
                    format!("{family_name}_count"),
                ]
                .contains(&sample.name),
                _ => sample.name == family_name,
            };
            assert!(
                suffix_ok,
                "{}",
                at("sample name does not belong to the family above it")
            );
            if sample.name.ends_with("_bucket") {
                assert!(
                    sample.labels.contains_key("le"),
                    "{}",
                    at("bucket without le")
                );
            }
            if family.kind == "counter" {
                assert!(sample.value >= 0.0, "{}", at("negative counter"));
            }
            let series = format!("{}{:?}", sample.name, sample.labels);
            assert!(
                seen_series.insert(series),
                "{}",
                at("the same series twice")
            );
            family.samples.push(sample);
        }
        assert!(
            !exposition
                .families
                .keys()
                .any(|name| name.starts_with('\0')),
            "a HELP without a TYPE"
        );
        for (name, family) in &exposition.families {
            assert!(!family.samples.is_empty(), "family {name} has no samples");
            if family.kind == "histogram" {
                check_histogram(name, family);
            }
        }
        exposition
    }

    /// The value of the sample with exactly these labels.
    pub fn value(&self, sample_name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.families
            .values()
            .flat_map(|family| &family.samples)
            .find(|sample| sample.name == sample_name && sample.labels == wanted)
            .map(|sample| sample.value)
    }

    /// All values a label takes in a family's samples.
    pub fn label_values(&self, family: &str, label: &str) -> HashSet<String> {
        self.families
            .get(family)
            .map(|family| {
                family
                    .samples
                    .iter()
                    .filter_map(|sample| sample.labels.get(label).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn kind(&self, family: &str) -> Option<&str> {
        self.families.get(family).map(|family| family.kind.as_str())
    }
}

/// Buckets of each series rise with `le`, end at `+Inf`, and that bucket
/// equals `_count`.
fn check_histogram(name: &str, family: &Family) {
    let mut buckets: HashMap<BTreeMap<String, String>, Vec<(f64, f64)>> = HashMap::new();
    let mut counts = HashMap::new();
    for sample in &family.samples {
        let mut series_labels = sample.labels.clone();
        if sample.name.ends_with("_bucket") {
            let le = series_labels.remove("le").expect("checked above");
            let bound = parse_value(&le).unwrap_or_else(|| panic!("{name}: bad le {le:?}"));
            buckets
                .entry(series_labels)
                .or_default()
                .push((bound, sample.value));
        } else if sample.name.ends_with("_count") {
            counts.insert(series_labels, sample.value);
        }
    }
    assert_eq!(
        buckets.len(),
        counts.len(),
        "{name}: series without buckets or count"
    );
    for (labels, bounds) in buckets {
        assert!(
            bounds.windows(2).all(|w| w[0].0 < w[1].0),
            "{name}{labels:?}: le not rising"
        );
        assert!(
            bounds.windows(2).all(|w| w[0].1 <= w[1].1),
            "{name}{labels:?}: buckets not cumulative"
        );
        let last = bounds.last().expect("at least one bucket");
        assert_eq!(last.0, f64::INFINITY, "{name}{labels:?}: no +Inf bucket");
        assert_eq!(
            Some(&last.1),
            counts.get(&labels),
            "{name}{labels:?}: +Inf bucket != count"
        );
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// `name{label="value",...} value [timestamp]`.
fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut cursor = inner;
        loop {
            if let Some(after) = cursor.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after_eq) = cursor.split_once("=\"")?;
            if !is_label_name(label) {
                return None;
            }
            // The value ends at the first quote not escaped by a backslash.
            let mut end = None;
            let mut escaped = false;
            for (i, c) in after_eq.char_indices() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end?;
            let value = unescape(&after_eq[..end], true)?;
            if labels.insert(label.to_owned(), value).is_some() {
                return None;
            }
            cursor = &after_eq[end + 1..];
            cursor = cursor.strip_prefix(',').unwrap_or(cursor);
        }
    }
    let rest = rest.strip_prefix(' ')?;
    let mut fields = rest.split(' ');
    let value = parse_value(fields.next()?)?;
    if let Some(timestamp) = fields.next() {
        timestamp.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Undoes `\\`, `\n` (and `\"` in label values); any other escape is an error.
fn unescape(text: &str, quotes: bool) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\n' {
            return None;
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '\\' => out.push('\\'),
            'n' => out.push('\n'),
            '"' if quotes => out.push('"'),
            _ => return None,
        }
    }
    Some(out)
}

#[test]
fn the_reader_rejects_what_the_format_forbids() {
    let good = "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n";
    assert_eq!(
        Exposition::parse(good).value("a_total", &[("x", "1")]),
        Some(3.0)
    );
    for bad in [
        "# TYPE a counter\na 1\n",                                  // TYPE without HELP
        "# HELP a A.\n# TYPE a counter\nb 1\n",                     // sample of another family
        "# HELP a A.\n# TYPE a counter\na{x=\"1\"} 1\na{x=\"1\"} 2\n", // duplicate series
        "# HELP a A.\n# TYPE a counter\na{x=1} 1\n",                // unquoted label value
        "# HELP a A.\n# TYPE a counter\na 1 2 3\n",                 // trailing field
        "# HELP a A.\n# TYPE a gauge\na{x=\"\\q\"} 1\n",            // bad escape
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
    ] {
        let result = std::panic::catch_unwind(|| Exposition::parse(bad));
        assert!(result.is_err(), "accepted bad exposition:\n{bad}");
    }
}
