//! Which members a writer takes from the message it forwards (the rule of the README's
//! "What each writer forwards"): a member that carries meaning in the written dialect
//! comes only from what the node read and checked, never from another dialect's
//! free-form members (a WNM's unknown properties, the array form's headers), and no
//! member is written twice. Without this a WIS2 publisher could write `fileOp` or
//! `relPath` into the v03 announcement this node sends its v03 peers.

use super::Dialect;

/// v03 members the v03 writer writes itself, from the message as read: never forwarded
/// from `extra` (a v03 message's non-numeric `size` is one).
pub const V03_WRITTEN: [&str; 10] = [
    "pubTime",
    "baseUrl",
    "relPath",
    "retPath",
    "retrievePath",
    "integrity",
    "identity",
    "size",
    "content",
    "fileOp",
];

/// Members that make a reader take a JSON object for a WNM (`type` when it says
/// `Feature`): a v03 message never carries them.
pub const WNM_MARKS: [&str; 3] = ["conformsTo", "properties", "type"];

/// v03 members sr3 acts on (file times and mode, routing, the media type): forwarded
/// from v03 messages and from the array form's headers (v02 names of the same
/// meaning), never from a WNM's properties.
pub const SR3_MEANING: [&str; 9] = [
    "mtime",
    "atime",
    "mode",
    "contentType",
    "source",
    "from_cluster",
    "to_clusters",
    "partitionStrategy",
    "blocks",
];

/// What a v03 announcement carries of a WNM so that a WIS2 node further on writes it
/// back: written from the WNM as read, and read back only from a v03 message.
pub const WIS2_CARRIED: [&str; 7] = [
    "data_id",
    "metadata_id",
    "datetime",
    "start_datetime",
    "end_datetime",
    "geometry",
    "contentType",
];

/// WNM properties the WNM writer writes itself (or never: `global-cache` is only an
/// accredited global cache's to say).
pub const WNM_WRITTEN: [&str; 9] = [
    "pubtime",
    "data_id",
    "metadata_id",
    "integrity",
    "content",
    "datetime",
    "start_datetime",
    "end_datetime",
    "global-cache",
];

/// True when a WIS2 writer takes `key` in a v03 message for a part of the WNM.
fn wnm_owned(key: &str) -> bool {
    WNM_MARKS.contains(&key) || WIS2_CARRIED.contains(&key) || WNM_WRITTEN.contains(&key)
}

/// True when `key`, a member of `extra` of a message read in dialect `from`, goes into
/// a v03 announcement as a top-level member.
pub fn v03_forwards(from: Dialect, key: &str) -> bool {
    if V03_WRITTEN.contains(&key) {
        return false;
    }
    match from {
        // its own unknown members (and the WIS2 members it carries), as they came
        Dialect::WmoMesh | Dialect::Sr3 => true,
        // nothing that a WIS2 writer further on would take as the WNM's own
        Dialect::Array | Dialect::Wis2 if wnm_owned(key) => false,
        Dialect::Array => true,
        Dialect::Wis2 => !SR3_MEANING.contains(&key),
    }
}

/// True when `key`, a member of `extra` of a message read in dialect `from`, goes into
/// a WNM's properties.
pub fn wnm_forwards(from: Dialect, key: &str) -> bool {
    if WNM_WRITTEN.contains(&key) {
        return false;
    }
    match from {
        Dialect::Wis2 => true,
        // geometry and contentType have their own places in a WNM
        Dialect::WmoMesh | Dialect::Sr3 | Dialect::Array => {
            !WIS2_CARRIED.contains(&key) && !V03_WRITTEN.contains(&key)
        }
    }
}

/// True when a v03 message's `extra` may say what a WNM written from it carries
/// (data_id, metadata_id, the times, geometry, the media type): only a v03 message,
/// which carries them from a WNM read upstream.
pub fn carries_wis2(from: Dialect) -> bool {
    matches!(from, Dialect::WmoMesh | Dialect::Sr3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wnm_property_never_becomes_a_v03_field_with_meaning() {
        for key in V03_WRITTEN
            .iter()
            .chain(&WNM_MARKS)
            .chain(&SR3_MEANING)
            .chain(&WIS2_CARRIED)
        {
            assert!(!v03_forwards(Dialect::Wis2, key), "{key}");
        }
        assert!(v03_forwards(Dialect::Wis2, "producer"));
        assert!(v03_forwards(Dialect::Wis2, "cache"));
    }

    #[test]
    fn array_headers_keep_their_v02_meaning_but_not_v03_fields() {
        assert!(v03_forwards(Dialect::Array, "source"));
        assert!(v03_forwards(Dialect::Array, "mtime"));
        for key in [
            "integrity",
            "identity",
            "relPath",
            "fileOp",
            "data_id",
            "properties",
        ] {
            assert!(!v03_forwards(Dialect::Array, key), "{key}");
        }
    }

    #[test]
    fn v03_members_never_become_wnm_properties_the_writer_owns() {
        for from in [
            Dialect::WmoMesh,
            Dialect::Sr3,
            Dialect::Array,
            Dialect::Wis2,
        ] {
            for key in WNM_WRITTEN {
                assert!(!wnm_forwards(from, key), "{from:?} {key}");
            }
        }
        assert!(!wnm_forwards(Dialect::Sr3, "size"));
        assert!(wnm_forwards(Dialect::Sr3, "source"));
        assert!(!carries_wis2(Dialect::Array) && !carries_wis2(Dialect::Wis2));
    }
}
