//! The channel interface's answers: JSON bodies and refusals.

use crate::channels::{Reason, Refusal};
use crate::http::Reply;
use serde_json::{json, Value};

impl Refusal {
    /// The HTTP status that says this refusal.
    pub fn status(&self) -> u16 {
        match self.reason {
            Reason::BadRequest => 400,
            Reason::Unauthenticated => 401,
            Reason::Forbidden => 403,
            Reason::NotFound => 404,
            Reason::WrongMethod => 405,
            Reason::LengthRequired => 411,
            Reason::TooLarge => 413,
            Reason::UnsupportedEncoding => 415,
            Reason::Storage => 500,
            Reason::DiskFull => 507,
            Reason::TooSlow => 408,
        }
    }
}

const REALM: &str = "Basic realm=\"meshnode taker\", charset=\"UTF-8\"";

/// A JSON answer.
pub(super) fn json_reply(status: u16, v: &Value) -> Reply {
    let mut body = serde_json::to_vec_pretty(v).expect("JSON serializes");
    body.push(b'\n');
    Reply::new(status).bytes("application/json", body)
}

impl Refusal {
    /// The answer that says this refusal.
    pub fn reply(&self) -> Reply {
        let r = json_reply(
            self.status(),
            &json!({"status": self.status(), "error": self.why}),
        );
        if self.reason == Reason::Unauthenticated {
            r.header("www-authenticate", REALM)
        } else {
            r
        }
    }
}
