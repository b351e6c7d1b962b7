//! Request XML bodies: the tree parser, then each document type read from it (Complete,
//! DeleteObjects, CORS, lifecycle). Properties: the parser's depth bound holds; a parsed tree
//! written out again parses to the same tree; CORS and lifecycle rules survive their own
//! serialisation; Complete and DeleteObjects results respect their documented limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpgw::s3::{cors, lifecycle, ops};
use mpgw::xml::{self, Node, Xml};

fuzz_target!(|data: &[u8]| {
    let Ok(root) = xml::parse(data) else {
        // A document the tree parser refuses is refused by every reader.
        assert!(cors::parse(data).is_err());
        assert!(lifecycle::parse(data).is_err());
        assert!(ops::complete_parts(data).is_err());
        assert!(ops::delete_request(data).is_err());
        return;
    };
    assert!(depth(&root) <= 16, "depth bound");
    if plain_names(&root) {
        let doc = if root.children.is_empty() {
            Xml::text_document(&root.name, &root.text)
        } else {
            let mut x = Xml::bare(&root.name);
            write(&mut x, &root);
            x.finish(&root.name)
        };
        let again = xml::parse(doc.as_bytes()).expect("own output parses");
        assert_eq!(normalize(&again), normalize(&root));
    }
    if let Ok(rules) = cors::parse(data) {
        let again = cors::parse(cors::to_xml(&rules).as_bytes()).expect("own CORS output parses");
        assert_eq!(again, rules);
    }
    if let Ok(rules) = lifecycle::parse(data) {
        let again = lifecycle::parse(lifecycle::to_xml(&rules).as_bytes())
            .expect("own lifecycle output parses");
        assert_eq!(again, rules);
    }
    if let Ok(parts) = ops::complete_parts(data) {
        assert_eq!(parts.len(), root.children_named("Part").count());
        assert!(parts.iter().all(|p| (1..=10000).contains(&p.number.get())));
    }
    if let Ok((_, objects)) = ops::delete_request(data) {
        assert!((1..=1000).contains(&objects.len()));
    }
});

fn depth(n: &Node) -> usize {
    1 + n.children.iter().map(depth).max().unwrap_or(0)
}

/// Names our writer can reproduce: the parser keeps whatever quick-xml calls a local name.
fn plain_names(n: &Node) -> bool {
    !n.name.is_empty()
        && n.name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && n.name.as_bytes()[0].is_ascii_alphabetic()
        && n.children.iter().all(plain_names)
}

/// Writes the children of `n` (its text too when it is a leaf) into `x`.
fn write(x: &mut Xml, n: &Node) {
    for c in &n.children {
        if c.children.is_empty() {
            x.elem(&c.name, &c.text);
        } else {
            x.open(&c.name);
            write(x, c);
            x.close(&c.name);
        }
    }
}

/// The text of inner elements is layout (or mixed content), which the writer drops.
fn normalize(n: &Node) -> Node {
    Node {
        name: n.name.clone(),
        text: if n.children.is_empty() {
            n.text.clone()
        } else {
            String::new()
        },
        children: n.children.iter().map(normalize).collect(),
    }
}
