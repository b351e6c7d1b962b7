//! The decoded query string every S3 step reads.

use percent_encoding::percent_decode_str;

/// The query string with every name and value percent-decoded exactly once (`+` stays a plus,
/// as S3 reads it), in request order. Routing, the operations and the SigV2 signer read this one
/// view, so a parameter cannot select an operation under one spelling (`%75ploadId`) while the
/// signature covers another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(Vec<Param>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Param {
    name: String,
    value: String,
    /// Sent as `?name` with no `=` (SigV2 signs `name`, not `name=`).
    bare: bool,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        Self(
            raw.unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => Param {
                        name: decode(k),
                        value: decode(v),
                        bare: false,
                    },
                    None => Param {
                        name: decode(p),
                        value: String::new(),
                        bare: true,
                    },
                })
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|p| p.name == name)
    }

    /// Every parameter in request order: its name, and its value (`None` for a bare `?name`).
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.0
            .iter()
            .map(|p| (p.name.as_str(), (!p.bare).then_some(p.value.as_str())))
    }
}
