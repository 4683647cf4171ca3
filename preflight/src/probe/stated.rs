//! Probe results stated rather than probed: what a test, or a node described in files, says the
//! kernel has. Only the answers given exist; everything else reads as "not probed".
use super::ProbeReport;
use crate::model::Support;

impl ProbeReport {
    /// `helpers`: (program type, helper, available); `misc`: (feature, available).
    pub fn stated(helpers: &[(&str, &str, bool)], misc: &[(&str, bool)]) -> Self {
        let mut report = Self {
            program_types: Default::default(),
            map_types: Default::default(),
            helpers: Default::default(),
            helpers_not_probed: Default::default(),
            misc: misc
                .iter()
                .map(|(name, on)| (name.to_string(), Support::from_result(Ok(*on))))
                .collect(),
            elapsed_ms: 0.0,
        };
        for (program_type, helper, on) in helpers {
            report
                .helpers
                .entry(program_type.to_string())
                .or_default()
                .insert(helper.to_string(), Support::from_result(Ok(*on)));
        }
        report
    }
}
