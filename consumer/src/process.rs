//! What the seed's consumer does with a message: decode it as JSON and print
//! `Received message: <value>`. Pure, so every kind of input is a unit test.

use serde::de::IgnoredAny;

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A JSON value, printed.
    Printed,
    /// A null value (a tombstone), printed as `null` like the seed's client prints `None`.
    Null,
    /// Not UTF-8 or not JSON: skipped, with the reason.
    Invalid(String),
}

/// Appends the seed's line for a record with `value` to `out`.
pub fn render(value: Option<&[u8]>, out: &mut Vec<u8>) -> Outcome {
    let Some(value) = value else {
        out.extend_from_slice(b"Received message: null\n");
        return Outcome::Null;
    };
    if let Err(err) = std::str::from_utf8(value) {
        return Outcome::Invalid(format!("not UTF-8: {err}"));
    }
    // Validating without building a tree is most of the cost saved: the value is printed as sent.
    if let Err(err) = serde_json::from_slice::<IgnoredAny>(value) {
        return Outcome::Invalid(format!("not JSON: {err}"));
    }
    out.extend_from_slice(b"Received message: ");
    let trimmed = value.trim_ascii();
    if trimmed.contains(&b'\n') {
        // Pretty-printed JSON would span lines; one message, one line.
        match serde_json::from_slice::<serde_json::Value>(trimmed) {
            Ok(v) => out.extend_from_slice(v.to_string().as_bytes()),
            Err(err) => return Outcome::Invalid(format!("not JSON: {err}")),
        }
    } else {
        out.extend_from_slice(trimmed);
    }
    out.push(b'\n');
    Outcome::Printed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_str(value: Option<&[u8]>) -> (Outcome, String) {
        let mut out = Vec::new();
        let outcome = render(value, &mut out);
        (outcome, String::from_utf8(out).expect("utf8"))
    }

    #[test]
    fn prints_the_seed_line() {
        let (o, s) = render_str(Some(br#"{"cnt": "cnt: 1"}"#));
        assert_eq!(
            (o, s.as_str()),
            (
                Outcome::Printed,
                "Received message: {\"cnt\": \"cnt: 1\"}\n"
            )
        );
    }

    #[test]
    fn multi_line_json_becomes_one_line() {
        let (o, s) = render_str(Some(b"{\n  \"cnt\": \"cnt: 2\"\n}\n"));
        assert_eq!(
            (o, s.as_str()),
            (Outcome::Printed, "Received message: {\"cnt\":\"cnt: 2\"}\n")
        );
    }

    #[test]
    fn null_values_and_bad_input_never_fail() {
        assert_eq!(
            render_str(None),
            (Outcome::Null, "Received message: null\n".into())
        );
        let (o, s) = render_str(Some(b"not json"));
        assert!(matches!(o, Outcome::Invalid(r) if r.starts_with("not JSON")) && s.is_empty());
        let (o, _) = render_str(Some(&[0xff, 0xfe]));
        assert!(matches!(o, Outcome::Invalid(r) if r.starts_with("not UTF-8")));
        let (o, _) = render_str(Some(b""));
        assert!(matches!(o, Outcome::Invalid(_)));
    }
}
