//! Names Kubernetes and Helm accept, checked before they reach a command line, a manifest or
//! a journal: namespaces and object names are DNS-1123 labels (Kubernetes
//! `IsDNS1123Label`, apimachinery pkg/util/validation), a Helm release name is a label of at
//! most 53 characters (helm pkg/chartutil `maxReleaseNameLen`), a kubeconfig context name is
//! free text that preflight keeps to one safe word.

/// Why `name` is not a DNS-1123 label (namespace and object names): at most 63 characters,
/// lower-case letters, digits and '-', starting and ending with a letter or digit.
pub fn dns1123_label_error(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > 63 {
        return Some(format!("is {} characters long; at most 63", name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(format!(
            "contains {c:?}: only lower-case letters, digits and '-' are allowed"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("must start and end with a letter or digit".into());
    }
    None
}

/// clap value parser for `--namespace` and `--name`.
pub fn parse_dns1123_label(name: &str) -> Result<String, String> {
    match dns1123_label_error(name) {
        None => Ok(name.to_string()),
        Some(why) => Err(format!("{name:?} is not a valid DNS-1123 label: it {why}")),
    }
}

/// Helm's own limit on a release name (helm v3 pkg/chartutil/validate_name.go: release names
/// end up in label values and Secret names, which are longer).
pub const MAX_RELEASE_NAME: usize = 53;

/// clap value parser for `--release-name`: a DNS-1123 label of at most 53 characters.
pub fn parse_release_name(name: &str) -> Result<String, String> {
    let why = dns1123_label_error(name).or_else(|| {
        (name.len() > MAX_RELEASE_NAME).then(|| {
            format!(
                "is {} characters long; Helm allows at most {MAX_RELEASE_NAME}",
                name.len()
            )
        })
    });
    match why {
        None => Ok(name.to_string()),
        Some(why) => Err(format!(
            "{name:?} is not a valid Helm release name: it {why}"
        )),
    }
}

/// Why `name` is not a kubeconfig context name preflight passes on: kubeconfig allows any
/// string, but it ends up on helm's and kubectl's command lines and in the journal, so it is
/// held to letters, digits and `@._:+/-` (what EKS `arn:aws:eks:…:cluster/x`, kind's
/// `kind-x` and kubeadm's `admin@x` use), at most 253 characters, not starting with `-`.
pub fn context_name_error(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > 253 {
        return Some(format!("is {} characters long; at most 253", name.len()));
    }
    if name.starts_with('-') {
        return Some("starts with '-' (it would read as an option)".into());
    }
    name.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "@._:+/-".contains(*c)))
        .map(|c| format!("contains {c:?}: only letters, digits and '@._:+/-' are allowed"))
}

/// clap value parser for `--context`.
pub fn parse_context_name(name: &str) -> Result<String, String> {
    match context_name_error(name) {
        None => Ok(name.to_string()),
        Some(why) => Err(format!(
            "{name:?} is not a context name preflight accepts: it {why}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_and_names_are_dns_1123_labels() {
        for good in ["preflight", "kube-system", "a", "ns-1", &"a".repeat(63)] {
            assert_eq!(parse_dns1123_label(good), Ok(good.to_string()));
        }
        for (bad, why) in [
            ("Bad_NS", "'B'"),
            ("bad_ns", "'_'"),
            ("-ns", "start and end"),
            ("ns-", "start and end"),
            ("", "empty"),
            ("a.b", "'.'"),
        ] {
            let err = parse_dns1123_label(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(
            parse_dns1123_label(&"a".repeat(64))
                .unwrap_err()
                .contains("at most 63")
        );
    }

    #[test]
    fn release_names_are_labels_of_at_most_53_characters() {
        assert_eq!(parse_release_name("cilium"), Ok("cilium".to_string()));
        assert_eq!(parse_release_name(&"a".repeat(53)), Ok("a".repeat(53)));
        let err = parse_release_name(&"a".repeat(54)).unwrap_err();
        assert!(err.contains("at most 53"), "{err}");
        let err = parse_release_name("Cilium").unwrap_err();
        assert!(err.contains("not a valid Helm release name"), "{err}");
    }

    #[test]
    fn context_names_are_one_safe_word() {
        for good in [
            "default",
            "kind-kind",
            "admin@k8s",
            "arn:aws:eks:eu-west-1:1:cluster/x",
        ] {
            assert_eq!(parse_context_name(good), Ok(good.to_string()));
        }
        for (bad, why) in [("", "empty"), ("-x", "'-'"), ("a b", "' '"), ("a;b", "';'")] {
            let err = parse_context_name(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
