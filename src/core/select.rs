//! `--select 'accept RE'` / `'reject RE'` rules: first match wins, unmatched accepted.

use regex_lite::Regex;

#[derive(Debug, Clone)]
pub struct Rule {
    pub accept: bool,
    pub pattern: Regex,
}

/// A rule that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectError {
    /// Not `accept RE` or `reject RE`.
    Form(String),
    /// The regular expression does not compile.
    Regex { spec: String, why: String },
}

impl std::fmt::Display for SelectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SelectError::Form(spec) => {
                write!(f, "select {spec:?}: expected 'accept RE' or 'reject RE'")
            }
            SelectError::Regex { spec, why } => {
                write!(f, "select {spec:?}: bad regular expression: {why}")
            }
        }
    }
}

impl std::error::Error for SelectError {}

#[derive(Debug, Clone, Default)]
pub struct Selection {
    rules: Vec<Rule>,
}

impl Selection {
    /// Adds one rule written as `accept RE` or `reject RE`.
    pub fn push(&mut self, spec: &str) -> Result<(), SelectError> {
        let form = || SelectError::Form(spec.to_string());
        let (verb, re) = spec
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(form)?;
        let accept = match verb {
            "accept" => true,
            "reject" => false,
            _ => return Err(form()),
        };
        // anchored like Sarracenia's accept/reject: the whole relPath must match
        let pattern =
            Regex::new(&format!("^(?:{})$", re.trim())).map_err(|e| SelectError::Regex {
                spec: spec.to_string(),
                why: e.to_string(),
            })?;
        self.rules.push(Rule { accept, pattern });
        Ok(())
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// True when `rel` is to be processed.
    pub fn accepts(&self, rel: &str) -> bool {
        self.rules
            .iter()
            .find(|r| r.pattern.is_match(rel))
            .is_none_or(|r| r.accept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_match_wins_and_unmatched_is_accepted() {
        let mut s = Selection::default();
        s.push("reject .*/IU/.*SECRET.*").unwrap();
        s.push("accept .*/IU/.*").unwrap();
        s.push("reject .*\\.grib2").unwrap();
        assert!(s.accepts("2019/GTS/CWAO/IU/a.bufr"));
        assert!(!s.accepts("2019/GTS/CWAO/IU/SECRET.bufr"));
        assert!(!s.accepts("2019/GTS/CWAO/HR/a.grib2"));
        assert!(s.accepts("2019/GTS/CWAO/SX/a.txt"));
        assert!(Selection::default().accepts("anything"));
    }

    #[test]
    fn refuses_bad_rules() {
        let mut s = Selection::default();
        assert!(s
            .push("allow .*")
            .unwrap_err()
            .to_string()
            .contains("expected"));
        assert!(s
            .push("accept")
            .unwrap_err()
            .to_string()
            .contains("expected"));
        assert!(s
            .push("accept (")
            .unwrap_err()
            .to_string()
            .contains("bad regular"));
    }
}
