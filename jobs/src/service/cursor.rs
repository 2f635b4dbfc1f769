//! The opaque cursors of listJobs and getJobHistory: a version tag and the last item's id,
//! base64url; anything else is refused as "not a cursor this service returned".

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::job::is_valid_job_id;

/// listJobs: after this job id.
pub(super) fn encode_cursor(after_job_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{after_job_id}"))
}

pub(super) fn decode_cursor(cursor: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let s = String::from_utf8(bytes).ok()?;
    let id = s.strip_prefix("v1:")?;
    is_valid_job_id(id).then(|| id.to_string())
}

/// getJobHistory: after this event id.
pub(super) fn encode_history_cursor(after_event_id: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("h1:{after_event_id}"))
}

pub(super) fn decode_history_cursor(cursor: &str) -> Option<u64> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let s = String::from_utf8(bytes).ok()?;
    s.strip_prefix("h1:")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        let id = crate::job::new_job_id();
        assert_eq!(decode_cursor(&encode_cursor(&id)), Some(id));
        assert_eq!(decode_cursor("junk"), None);
        assert_eq!(decode_cursor(&URL_SAFE_NO_PAD.encode("v1:../x")), None);
        assert_eq!(decode_history_cursor(&encode_history_cursor(42)), Some(42));
        assert_eq!(
            decode_history_cursor(&encode_cursor(&crate::job::new_job_id())),
            None
        );
    }
}
