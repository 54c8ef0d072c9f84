//! Keeps credentials out of what the endpoints serve. Error messages come from AWS and the
//! SDK; none is known to carry credentials, but a message quoting a request could. Every
//! string served is passed through [`redact`]: access key ids, the values of signature,
//! credential, token and authorization fields, and the literal secret key and session token
//! of this process's environment are replaced with `[redacted]`.

use std::sync::OnceLock;

const MASK: &str = "[redacted]";

/// Field names whose values are secret or signed (compared in ASCII lower case).
const KEYS: &[&str] = &[
    "authorization",
    "x-amz-security-token",
    "x-amz-signature",
    "x-amz-credential",
    "signedheaders",
    "signature",
    "credential",
    "security-token",
    "securitytoken",
    "session-token",
    "sessiontoken",
    "session_token",
    "secret_access_key",
    "secretaccesskey",
    "secret-access-key",
    "aws_access_key_id",
];

/// Access key id prefixes (long-term and temporary keys, roles, users).
const KEY_ID_PREFIXES: &[&str] = &["AKIA", "ASIA", "AROA", "AIDA", "AGPA", "ANPA", "ANVA"];

fn env_secrets() -> &'static [String] {
    static S: OnceLock<Vec<String>> = OnceLock::new();
    S.get_or_init(|| {
        [
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
        ]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        // Short values (a test's "test") would mask ordinary words.
        .filter(|v| v.len() >= 16)
        .collect()
    })
}

fn is_value_end(b: u8) -> bool {
    b.is_ascii_whitespace() || b"&,;\"')]}<>".contains(&b)
}

/// `s` with credentials replaced by `[redacted]`.
pub fn redact(s: &str) -> String {
    let mut out = s.to_string();
    for secret in env_secrets() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    // Values after `key=`, `key:` or `"key": "`.
    let mut i = 0;
    while i < out.len() {
        let lower = out.as_bytes()[i..].to_ascii_lowercase();
        let Some((at, key)) = KEYS
            .iter()
            .filter_map(|k| find(&lower, k.as_bytes()).map(|p| (p, *k)))
            .min_by_key(|(p, k)| (*p, usize::MAX - k.len()))
        else {
            break;
        };
        let mut j = i + at + key.len();
        let b = out.as_bytes();
        // Skip a closing quote, spaces, and one `=` or `:`, then spaces and an opening quote.
        while j < b.len() && (b[j] == b'"' || b[j] == b'\'' || b[j] == b' ') {
            j += 1;
        }
        if j < b.len() && (b[j] == b'=' || b[j] == b':') {
            j += 1;
            while j < b.len() && (b[j] == b' ' || b[j] == b'"' || b[j] == b'\'') {
                j += 1;
            }
            let start = j;
            while j < b.len() && !is_value_end(b[j]) {
                j += 1;
            }
            if j > start && &out[start..j] != MASK {
                out.replace_range(start..j, MASK);
                j = start + MASK.len();
            }
        }
        i = j.max(i + at + key.len());
        while !out.is_char_boundary(i) {
            i += 1;
        }
    }
    mask_key_ids(&out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn mask_key_ids(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut copied = 0;
    while i + 20 <= b.len() {
        let candidate = &b[i..i + 20];
        let boundary_before = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        let boundary_after = i + 20 == b.len() || !b[i + 20].is_ascii_alphanumeric();
        if boundary_before
            && boundary_after
            && KEY_ID_PREFIXES
                .iter()
                .any(|p| candidate.starts_with(p.as_bytes()))
            && candidate
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            out.push_str(&s[copied..i]);
            out.push_str(MASK);
            i += 20;
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&s[copied..]);
    out
}

/// Redacts every string (and object key) of a JSON value in place.
pub fn redact_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => {
            let r = redact(s);
            if r != *s {
                *s = r;
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact_json),
        serde_json::Value::Object(o) => {
            let entries: Vec<(String, serde_json::Value)> = std::mem::take(o).into_iter().collect();
            for (k, mut val) in entries {
                redact_json(&mut val);
                o.insert(redact(&k), val);
            }
        }
        _ => {}
    }
}

/// A writer that redacts what passes through it (the log output): each write is one
/// formatted log line.
pub struct Redacting<W>(pub W);

impl<W: std::io::Write> std::io::Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_signatures_tokens_and_key_ids() {
        let auth = "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261122/us-east-1/ecs/aws4_request, SignedHeaders=host;x-amz-date, Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024";
        let r = redact(auth);
        assert!(!r.contains("AKIAIOSFODNN7EXAMPLE"), "{r}");
        assert!(!r.contains("fe5f80f77d5f"), "{r}");
        assert!(!r.contains("AWS4-HMAC-SHA256"), "{r}");
        let url = "https://ecs.example/?X-Amz-Security-Token=IQoJb3JpZ2luX2VjEBc%2F&X-Amz-Signature=abc123&Action=DescribeServices";
        let r = redact(url);
        assert!(
            !r.contains("IQoJb3JpZ2luX2VjEBc") && !r.contains("abc123"),
            "{r}"
        );
        assert!(r.contains("Action=DescribeServices"), "{r}");
        let json = r#"{"aws_session_token": "FwoGZXIvYXdzEXAMPLE", "SecretAccessKey":"wJalrXUtnFEMI/K7MDENG"}"#;
        let r = redact(json);
        assert!(
            !r.contains("FwoGZXIvYXdzEXAMPLE") && !r.contains("wJalrXUtnFEMI"),
            "{r}"
        );
        // A bare key id, and text that must stay.
        assert_eq!(
            redact("key ASIAY34FZKBOKMUTVV7A used"),
            "key [redacted] used"
        );
        let plain = "scale out 4 -> 8: target_tracking:cpu: cpu 96 vs target 70 on 4 units";
        assert_eq!(redact(plain), plain);
        assert_eq!(redact("naïve ☃ text"), "naïve ☃ text");
    }

    #[test]
    fn redacts_every_string_of_a_json_value() {
        let mut v = serde_json::json!({
            "a": ["x Signature=deadbeef y", {"b": "AKIAIOSFODNN7EXAMPLE"}],
            "n": 3
        });
        redact_json(&mut v);
        let text = v.to_string();
        assert!(
            !text.contains("deadbeef") && !text.contains("AKIAIOSFODNN7EXAMPLE"),
            "{text}"
        );
        assert_eq!(v["n"], 3);
    }

    #[test]
    fn the_log_writer_masks_key_ids_in_each_line() {
        use std::io::Write;
        let mut w = Redacting(Vec::new());
        let line = b"INFO aws_config: loaded creds=Credentials { access_key_id: \"AKIAFAKEKEYID0000001\" }\n";
        w.write_all(line).unwrap();
        let out = String::from_utf8(w.0).unwrap();
        assert!(!out.contains("AKIAFAKEKEYID0000001"), "{out}");
        assert!(
            out.starts_with("INFO aws_config: loaded creds=") && out.ends_with("}\n"),
            "{out}"
        );
    }
}
