//! MQTT topics: building announcement topics from a relPath, subscription filters,
//! and filter matching.

/// Appends the announcement topic for `rel` to `out`:
/// `<exchange>[NN]/<prefix>/<directories of rel>`, with `#` and `+` inside directory
/// names escaped as sr3 does (`%23`, `%2B`) so a name can never act as a wildcard.
pub fn announce_topic(out: &mut String, exchange: &str, prefix: &str, rel_dir: &str) {
    out.push_str(exchange);
    if !prefix.is_empty() {
        out.push('/');
        out.push_str(prefix);
    }
    for level in rel_dir.split('/').filter(|l| !l.is_empty()) {
        out.push('/');
        for c in level.chars() {
            match c {
                '#' => out.push_str("%23"),
                '+' => out.push_str("%2B"),
                c => out.push(c),
            }
        }
    }
}

/// The levels of a WIS2 topic after `a/wis2/` (`origin/a/wis2/ca-eccc-msc/data/core/x`
/// gives `ca-eccc-msc/data/core/x`): the hierarchy a WIS2 announcement keeps. `None`
/// for other topics.
pub fn wis2_tail(topic: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    let t = std::str::from_utf8(topic).ok()?;
    let at = if t.starts_with("a/wis2/") {
        0
    } else {
        t.find("/a/wis2/")? + 1
    };
    let tail = &t[at + "a/wis2/".len()..];
    (!tail.is_empty()).then_some(std::borrow::Cow::Borrowed(tail))
}

/// The exchange a message goes to when a flow is split over `n` workers, as the demo's
/// `mesh_multi.sh` does: `<exchange>NN`, NN = (first byte of integrity value) mod n.
pub fn split_exchange(out: &mut String, exchange: &str, n: u32, integrity_value: &str) {
    out.push_str(exchange);
    if n > 1 {
        let first = integrity_value.bytes().next().unwrap_or(0);
        let k = u32::from(first) % n;
        out.push(char::from(b'0' + (k / 10 % 10) as u8));
        out.push(char::from(b'0' + (k % 10) as u8));
    }
}

/// The subscription filter for one `--subtopic`.
///
/// With the default subtopic `#` and the demo's prefix `v03/post`, the filter is widened
/// to `<exchange>/v03/#`: it then also receives the demo peer's re-announcements, which
/// lack the slash after `post` (`xpublic/v03/post2019.../...`, formats.md), and sr3's
/// `xpublic/v03/...`. The message body, not the topic, says which file is meant.
pub fn subscription(exchange: &str, prefix: &str, subtopic: &str) -> String {
    if subtopic == "#" && prefix == "v03/post" {
        return format!("{exchange}/v03/#");
    }
    if prefix.is_empty() {
        format!("{exchange}/{subtopic}")
    } else {
        format!("{exchange}/{prefix}/{subtopic}")
    }
}

/// `filter` as an MQTT v5 shared subscription of `group` (`$share/GROUP/filter`): the
/// broker hands each message to one member of the group.
pub fn shared(group: &str, filter: &str) -> String {
    format!("$share/{group}/{filter}")
}

/// Checks a share group name: a single topic level without wildcards.
pub fn check_group(group: &str) -> Result<(), FilterError> {
    if group.is_empty() || group.contains(['/', '+', '#']) {
        return Err(FilterError::Group(group.to_string()));
    }
    Ok(())
}

/// MQTT topic filter matching (`+` one level, `#` the rest, including the parent level).
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A topic filter that MQTT would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    Empty,
    /// `#` not a whole last level.
    Hash(String),
    /// `+` not a whole level.
    Plus(String),
    /// A share group that is not one plain topic level.
    Group(String),
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FilterError::Empty => write!(f, "empty topic filter"),
            FilterError::Hash(t) => write!(f, "'#' must be a whole last level in filter {t:?}"),
            FilterError::Plus(t) => write!(f, "'+' must be a whole level in filter {t:?}"),
            FilterError::Group(g) => {
                write!(
                    f,
                    "share group {g:?} must be one topic level without '/', '+' or '#'"
                )
            }
        }
    }
}

impl std::error::Error for FilterError {}

/// Checks a filter given by a user: `#` only last and alone in its level, `+` alone.
pub fn check_filter(filter: &str) -> Result<(), FilterError> {
    if filter.is_empty() {
        return Err(FilterError::Empty);
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err(FilterError::Hash(filter.to_string()));
        }
        if level.contains('+') && *level != "+" {
            return Err(FilterError::Plus(filter.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_announcement_topics() {
        let mut t = String::new();
        announce_topic(&mut t, "xpublic", "v03/post", "2019013003/GTS/CWAO/SX");
        assert_eq!(t, "xpublic/v03/post/2019013003/GTS/CWAO/SX");
        t.clear();
        announce_topic(&mut t, "xpublic", "v03", "");
        assert_eq!(t, "xpublic/v03");
        t.clear();
        announce_topic(&mut t, "xpublic", "v03", "a#b/c+d");
        assert_eq!(
            wis2_tail(b"cache/a/wis2/ca-eccc-msc/data/core/weather").as_deref(),
            Some("ca-eccc-msc/data/core/weather")
        );
        assert_eq!(wis2_tail(b"a/wis2/x").as_deref(), Some("x"));
        assert_eq!(wis2_tail(b"xpublic/v03/post/a/b"), None);
        assert_eq!(wis2_tail(b"origin/a/wis2/"), None);
        assert_eq!(t, "xpublic/v03/a%23b/c%2Bd");
    }

    #[test]
    fn splits_exchanges_like_mesh_multi() {
        let mut e = String::new();
        split_exchange(&mut e, "xpublic", 5, "wmJVl6e0Xo8Zd3fqZ4+IxQ==");
        // 'w' is 119; 119 mod 5 = 4
        assert_eq!(e, "xpublic04");
        e.clear();
        split_exchange(&mut e, "xpublic", 1, "w");
        assert_eq!(e, "xpublic");
    }

    #[test]
    fn subscriptions_widen_only_the_default() {
        assert_eq!(subscription("xpublic", "v03/post", "#"), "xpublic/v03/#");
        assert_eq!(
            subscription("xpublic", "v03/post", "+/GTS/+/IU/#"),
            "xpublic/v03/post/+/GTS/+/IU/#"
        );
        assert_eq!(subscription("xpublic", "v03", "#"), "xpublic/v03/#");
    }

    #[test]
    fn matches_filters() {
        assert!(matches("xpublic/v03/#", "xpublic/v03/post/a/b"));
        assert!(matches("xpublic/v03/#", "xpublic/v03"));
        assert!(matches("xpublic/v03/#", "xpublic/v03/post2019013003/GTS"));
        assert!(matches("a/+/c", "a/b/c"));
        assert!(!matches("a/+/c", "a/b/d"));
        assert!(!matches("a/+/c", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(matches("+/GTS/+/IU/#", "2019/GTS/CWAO/IU/x"));
        assert!(!matches("+/GTS/+/IU/#", "2019/GTS/CWAO/IS/x"));
    }

    #[test]
    fn checks_filters() {
        assert!(check_filter("a/+/#").is_ok());
        assert!(check_filter("a/#/b").is_err());
        assert!(check_filter("a/b#").is_err());
        assert!(check_filter("a/b+/c").is_err());
        assert!(check_filter("").is_err());
    }
}
