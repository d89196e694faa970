//! An AMI event as plain pairs, for the tests of the tracker and of what the store
//! writes from it: built from AMI text or from `(name, value)` pairs, read through
//! [`EventFields`] as the tracker reads a real message. Test-only; it must never stand in
//! for the AMI parser outside tests.

use std::borrow::Cow;

use super::EventFields;

/// An event's headers, in order, names as given.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ev(Vec<(String, String)>);

impl Ev {
    /// `Name: value` lines (a `Name:` line with nothing after it is an empty value);
    /// other lines are ignored.
    pub(crate) fn parse(text: &str) -> Ev {
        Ev(text
            .lines()
            .filter_map(|l| {
                l.split_once(": ")
                    .or_else(|| l.strip_suffix(':').map(|k| (k, "")))
            })
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// The headers `pairs`, in order.
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Ev {
        Ev(pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect())
    }
}

impl EventFields for Ev {
    fn field(&self, key: &str) -> Option<Cow<'_, str>> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str().into())
    }

    fn fields(&self, key: &str) -> Vec<Cow<'_, str>> {
        self.0
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str().into())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_ignoring_case_and_repeats_kept_in_order() {
        let ev = Ev::parse(
            "Event: Newchannel\nChanVariable: a=1\nchanvariable: b=2\nEmpty:\nnot a header",
        );
        assert_eq!(ev.field("EVENT").as_deref(), Some("Newchannel"));
        assert_eq!(ev.field("Empty").as_deref(), Some(""));
        assert_eq!(ev.field("not a header"), None);
        assert_eq!(ev.fields("ChanVariable"), ["a=1", "b=2"]);
        let pairs = Ev::from_pairs(&[("Uniqueid", "1.1"), ("uniqueid", "1.2")]);
        assert_eq!(pairs.field("UniqueID").as_deref(), Some("1.1"));
        assert_eq!(pairs.fields("Uniqueid"), ["1.1", "1.2"]);
    }
}
