//! `--select 'accept RE'` / `'reject RE'` rules: first match wins, unmatched accepted.

use regex_lite::Regex;

#[derive(Debug, Clone)]
pub struct Rule {
    pub accept: bool,
    pub pattern: Regex,
}

#[derive(Debug, Clone, Default)]
pub struct Selection {
    rules: Vec<Rule>,
}

impl Selection {
    /// Adds one rule written as `accept RE` or `reject RE`.
    pub fn push(&mut self, spec: &str) -> Result<(), String> {
        let (verb, re) = spec
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("select {spec:?}: expected 'accept RE' or 'reject RE'"))?;
        let accept = match verb {
            "accept" => true,
            "reject" => false,
            _ => {
                return Err(format!(
                    "select {spec:?}: expected 'accept RE' or 'reject RE'"
                ))
            }
        };
        // anchored like Sarracenia's accept/reject: the whole relPath must match
        let pattern = Regex::new(&format!("^(?:{})$", re.trim()))
            .map_err(|e| format!("select {spec:?}: bad regular expression: {e}"))?;
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
        assert!(s.push("allow .*").unwrap_err().contains("expected"));
        assert!(s.push("accept").unwrap_err().contains("expected"));
        assert!(s.push("accept (").unwrap_err().contains("bad regular"));
    }
}
