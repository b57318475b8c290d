//! A labelled metric family whose series are told apart by their exact
//! label values.
//!
//! prometheus' own `HistogramVec`/`CounterVec` identify a series by a 64-bit
//! FNV hash of its label values written back to back, with no separator and
//! no check on a hash match: `{collection="c1",shard="23"}` and
//! `{collection="c12",shard="3"}` hash alike and would share one histogram.
//! Collection names are user input, so this family keys its series by the
//! values themselves instead.

use std::collections::HashMap;

use parking_lot::RwLock;
use prometheus::core::{Collector, Desc, Metric};
use prometheus::proto::{MetricFamily, MetricType};

/// Makes the series for one set of label values (given as name → value).
type SeriesFactory<M> = Box<dyn Fn(HashMap<String, String>) -> prometheus::Result<M> + Send + Sync>;

/// One series and the label values it was made for.
struct Series<M> {
    label_values: Vec<String>,
    metric: M,
}

/// One family (name, help, type, label names) and its series.
pub(crate) struct LabeledFamily<M> {
    desc: Desc,
    metric_type: MetricType,
    label_names: &'static [&'static str],
    make_series: SeriesFactory<M>,
    /// Keyed by the label values, each length-prefixed, so no two value
    /// tuples share a key; the values are kept beside the series for
    /// [`remove_where`](Self::remove_where).
    series: RwLock<HashMap<Vec<u8>, Series<M>>>,
}

impl<M: Metric> LabeledFamily<M> {
    pub(crate) fn new(
        fq_name: &str,
        help: &str,
        metric_type: MetricType,
        label_names: &'static [&'static str],
        make_series: SeriesFactory<M>,
    ) -> prometheus::Result<Self> {
        let desc = Desc::new(
            fq_name.to_owned(),
            help.to_owned(),
            label_names.iter().map(|name| (*name).to_owned()).collect(),
            HashMap::new(),
        )?;
        Ok(LabeledFamily {
            desc,
            metric_type,
            label_names,
            make_series,
            series: RwLock::new(HashMap::new()),
        })
    }

    /// The series for these label values (one per label name, in order),
    /// created on first use. `None` only if the values do not match the
    /// label names or the series could not be built; callers then drop the
    /// observation rather than fail a request over a metric.
    pub(crate) fn series(&self, values: &[&str]) -> Option<M> {
        if values.len() != self.label_names.len() {
            return None;
        }
        let key = series_key(values);
        if let Some(series) = self.series.read().get(&key) {
            return Some(series.metric.clone());
        }
        let mut all = self.series.write();
        if let Some(series) = all.get(&key) {
            return Some(series.metric.clone());
        }
        let labels = self
            .label_names
            .iter()
            .zip(values)
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let metric = (self.make_series)(labels).ok()?;
        let label_values = values.iter().map(|value| (*value).to_owned()).collect();
        all.insert(
            key,
            Series {
                label_values,
                metric: metric.clone(),
            },
        );
        Some(metric)
    }

    /// Drops every series whose value for label `label_index` is `value`.
    pub(crate) fn remove_where(&self, label_index: usize, value: &str) {
        self.series.write().retain(|_, series| {
            series.label_values.get(label_index).map(String::as_str) != Some(value)
        });
    }

    /// How many series the family holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.series.read().len()
    }
}

impl<M: Metric> Collector for LabeledFamily<M> {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let series = self.series.read();
        let mut samples: Vec<(&Vec<String>, prometheus::proto::Metric)> = series
            .values()
            .map(|series| (&series.label_values, series.metric.metric()))
            .collect();
        // Stable output whatever the hash map's order.
        samples.sort_by(|a, b| a.0.cmp(b.0));
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(self.metric_type);
        family.set_metric(samples.into_iter().map(|(_, metric)| metric).collect());
        vec![family]
    }
}

/// Shares one family between the [`Metrics`](crate::Metrics) that records
/// into it and the registry that collects it.
pub(crate) struct SharedFamily<M>(pub(crate) std::sync::Arc<LabeledFamily<M>>);

impl<M: Metric> Collector for SharedFamily<M> {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.0.collect()
    }
}

fn series_key(values: &[&str]) -> Vec<u8> {
    let mut key = Vec::with_capacity(values.iter().map(|value| value.len() + 8).sum());
    for value in values {
        key.extend_from_slice(&(value.len() as u64).to_le_bytes());
        key.extend_from_slice(value.as_bytes());
    }
    key
}

#[cfg(test)]
mod tests {
    use prometheus::{IntCounter, Opts};

    use super::*;

    fn counters() -> LabeledFamily<IntCounter> {
        LabeledFamily::new(
            "test_total",
            "test",
            MetricType::COUNTER,
            &["collection", "shard"],
            Box::new(|labels| {
                IntCounter::with_opts(Opts::new("test_total", "test").const_labels(labels))
            }),
        )
        .expect("valid family")
    }

    #[test]
    fn label_values_that_concatenate_alike_are_different_series() {
        let family = counters();
        family.series(&["c1", "23"]).expect("series").inc();
        family.series(&["c12", "3"]).expect("series").inc_by(5);
        assert_eq!(family.len(), 2);
        assert_eq!(family.series(&["c1", "23"]).expect("series").get(), 1);
        assert_eq!(family.series(&["c12", "3"]).expect("series").get(), 5);
    }

    #[test]
    fn wrong_label_count_is_refused_not_panicked() {
        let family = counters();
        assert!(family.series(&["only-one"]).is_none());
        assert_eq!(family.len(), 0);
    }

    #[test]
    fn remove_where_matches_one_label_exactly() {
        let family = counters();
        for (collection, shard) in [("a", "0"), ("a", "1"), ("ab", "0")] {
            family.series(&[collection, shard]).expect("series").inc();
        }
        family.remove_where(0, "a");
        assert_eq!(family.len(), 1);
        assert!(family.collect()[0].get_metric()[0]
            .get_label()
            .iter()
            .any(|pair| pair.value() == "ab"));
    }
}
