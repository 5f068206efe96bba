//! Property tests: the web-config parser on arbitrary input, and label
//! values made of arbitrary bytes (GPU names, host names, pod and container
//! names come from drivers and the kernel as C strings) through the text
//! encoding and back.

use std::path::Path;

use proptest::prelude::*;

use system_info_exporter::testing::{encode_sample, web_config as config};

/// Undoes the text format's escaping of a label value; `None` when the text
/// is not a valid escaped value (e.g. a raw line feed or quote).
fn unescape(text: &str) -> Option<String> {
    let mut value = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                '\\' => value.push('\\'),
                '"' => value.push('"'),
                'n' => value.push('\n'),
                _ => return None,
            },
            '"' | '\n' => return None,
            c => value.push(c),
        }
    }
    Some(value)
}

/// The values of the labels of the one sample line of `text`.
fn label_values(text: &str) -> Vec<String> {
    let sample: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(sample.len(), 1, "one sample line expected:\n{text}");
    let line = sample[0];
    let labels = &line[line.find('{').unwrap() + 1..line.rfind('}').unwrap()];
    let mut values = Vec::new();
    let mut rest = labels;
    while let Some(start) = rest.find("=\"") {
        let after = &rest[start + 2..];
        // The value ends at the first quote not escaped by a backslash.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let end = end.expect("a closing quote");
        values.push(unescape(&after[..end]).expect("a validly escaped value"));
        rest = &after[end + 1..];
    }
    values
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn label_values_of_any_bytes_survive_the_text_format(
        name in proptest::collection::vec(any::<u8>(), 0..64),
        host in proptest::collection::vec(any::<u8>(), 0..64),
        container in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let (name, host, container) = (lossy(&name), lossy(&host), lossy(&container));
        for (metric, labels) in [
            ("nvidia_gpu_info", vec!["0", "GPU-x", name.as_str(), "0000:01:00.0", "s"]),
            ("host_info", vec![host.as_str(), "linux", "13", "6.1"]),
            ("nvidia_gpu_allocation_info", vec!["0", "GPU-x", "ns", "pod", container.as_str(), "", "", ""]),
        ] {
            let text = encode_sample(metric, &labels, 1.0);
            // Each sample stays on one line, and every value comes back.
            prop_assert_eq!(label_values(&text), labels);
        }
    }

    #[test]
    fn the_web_config_parser_never_panics(text in "\\PC*", bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = config::parse(&text, Path::new("/etc/exporter"));
        let _ = config::parse(&lossy(&bytes), Path::new("/etc/exporter"));
    }

    #[test]
    fn unknown_keys_are_rejected_by_name(key in "[a-z_]{1,20}", section in 0usize..3) {
        let known: &[&[&str]] = &[
            &["tls_server_config", "http_server_config", "basic_auth_users"],
            &["cert_file", "key_file", "cert", "key", "client_auth_type", "client_ca_file",
              "client_allowed_sans", "cipher_suites", "curve_preferences", "min_version",
              "max_version", "prefer_server_cipher_suites"],
            &["http2", "headers"],
        ];
        prop_assume!(!known[section].contains(&key.as_str()));
        let text = match section {
            0 => format!("{key}: 1\n"),
            1 => format!("tls_server_config:\n  cert_file: a\n  key_file: b\n  {key}: 1\n"),
            _ => format!("http_server_config:\n  {key}: 1\n"),
        };
        let error = config::parse(&text, Path::new("/")).unwrap_err();
        let expected = format!("unknown field `{key}`");
        prop_assert!(error.contains(&expected), "{}", error);
    }

    #[test]
    fn relative_paths_are_relative_to_the_config_directory(name in "[a-zA-Z0-9_.-]{1,30}") {
        prop_assume!(name != "." && name != "..");
        let text = format!("tls_server_config:\n  cert_file: {name}\n  key_file: /abs/{name}\n");
        let parsed = config::parse(&text, Path::new("/etc/exporter"));
        // YAML may read some names as numbers or booleans; then it is an error, not a panic.
        if let Ok(parsed) = parsed {
            let tls = parsed.tls.unwrap();
            prop_assert_eq!(tls.cert, config::Pem::File(Path::new("/etc/exporter").join(&name)));
            prop_assert_eq!(tls.key, config::Pem::File(Path::new("/abs").join(&name)));
        }
    }
}
