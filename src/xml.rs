//! S3 XML: small builders for response documents and a minimal, bounded tree parser for request
//! bodies (Complete, DeleteObjects, CreateBucketConfiguration). The parser ignores namespaces and
//! element order, resolves only character references and the five predefined entities, and refuses
//! DTDs, so entity-expansion attacks have nothing to expand.

use quick_xml::events::Event;

pub const NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Writes an XML document; element text is escaped.
pub struct Xml(String);

impl Xml {
    pub fn new(root: &str) -> Self {
        Self(format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>{}<{root} xmlns="{NS}">"#,
            "\n"
        ))
    }

    /// A document whose root has no namespace (`<Error>`).
    pub fn bare(root: &str) -> Self {
        Self(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root}>"
        ))
    }

    /// A document whose root holds only text (`<LocationConstraint>`).
    pub fn text_document(root: &str, text: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>{}<{root} xmlns="{NS}">{}</{root}>"#,
            "\n",
            quick_xml::escape::escape(text)
        )
    }

    pub fn open(&mut self, tag: &str) -> &mut Self {
        self.0.push('<');
        self.0.push_str(tag);
        self.0.push('>');
        self
    }

    pub fn close(&mut self, tag: &str) -> &mut Self {
        self.0.push_str("</");
        self.0.push_str(tag);
        self.0.push('>');
        self
    }

    pub fn elem(&mut self, tag: &str, text: impl AsRef<str>) -> &mut Self {
        self.open(tag);
        self.0.push_str(&quick_xml::escape::escape(text.as_ref()));
        self.close(tag)
    }

    pub fn opt(&mut self, tag: &str, text: Option<impl AsRef<str>>) -> &mut Self {
        if let Some(t) = text {
            self.elem(tag, t);
        }
        self
    }

    pub fn finish(mut self, root: &str) -> String {
        self.close(root);
        self.0
    }
}

/// A parsed element: local name, concatenated text, children.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub text: String,
    pub children: Vec<Node>,
}

impl Node {
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct BadXml;

const MAX_DEPTH: usize = 16;

/// Parses a whole document into its root element.
pub fn parse(body: &[u8]) -> Result<Node, BadXml> {
    let text = std::str::from_utf8(body).map_err(|_| BadXml)?;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<Node> = Vec::new();
    let mut root = None;
    loop {
        match reader.read_event().map_err(|_| BadXml)? {
            Event::Start(e) => {
                if root.is_some() || stack.len() >= MAX_DEPTH {
                    return Err(BadXml);
                }
                let name = e.local_name().as_ref().to_owned();
                stack.push(Node {
                    name,
                    ..Node::default()
                });
            }
            Event::Empty(e) => {
                if root.is_some() {
                    return Err(BadXml);
                }
                let node = Node {
                    name: e.local_name().as_ref().to_owned(),
                    ..Node::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or(BadXml)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::Text(t) => {
                let s = t.xml10_content();
                match stack.last_mut() {
                    Some(n) => n.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err(BadXml),
                }
            }
            Event::CData(t) => {
                let n = stack.last_mut().ok_or(BadXml)?;
                n.text.push_str(&t);
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref().map_err(|_| BadXml)? {
                    Some(c) => c,
                    None => match &*r {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        _ => return Err(BadXml),
                    },
                };
                stack.last_mut().ok_or(BadXml)?.text.push(c);
            }
            Event::DocType(_) => return Err(BadXml),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(BadXml);
    }
    root.ok_or(BadXml)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn builds_escaped_documents() {
        let mut x = Xml::new("R");
        x.elem("Key", "a<b&\"c\"");
        assert_eq!(
            x.finish("R"),
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<R xmlns=\"{NS}\"><Key>a&lt;b&amp;&quot;c&quot;</Key></R>"
            )
        );
    }

    #[test]
    fn parses_complete_bodies_in_any_shape() {
        let body = br#"<?xml version="1.0"?>
<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Part><ETag>&#34;abc&#34;</ETag><PartNumber>1</PartNumber></Part>
  <Part><PartNumber>2</PartNumber><ETag>&quot;def&quot;</ETag></Part>
</CompleteMultipartUpload>"#;
        let root = parse(body).unwrap();
        assert_eq!(root.name, "CompleteMultipartUpload");
        let parts: Vec<_> = root.children_named("Part").collect();
        assert_eq!(parts[0].child_text("ETag"), Some("\"abc\""));
        assert_eq!(parts[1].child_text("ETag"), Some("\"def\""));
        assert_eq!(parts[1].child_text("PartNumber"), Some("2"));
    }

    #[test]
    fn refuses_dtds_entities_and_garbage() {
        let bomb = br#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>"#;
        assert_eq!(parse(bomb), Err(BadXml));
        assert_eq!(parse(b"<x>&foo;</x>"), Err(BadXml));
        assert_eq!(parse(b"<x><y></x>"), Err(BadXml));
        assert_eq!(parse(b""), Err(BadXml));
        assert_eq!(parse(b"<a/><b/>"), Err(BadXml));
        assert_eq!(parse(&[0xff, 0xfe]), Err(BadXml));
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert_eq!(parse(deep.as_bytes()), Err(BadXml));
    }

    /// A tree of elements with text only in leaves (what S3 documents look like).
    fn tree() -> impl Strategy<Value = Node> {
        let name = "[A-Za-z][A-Za-z0-9_.-]{0,8}";
        let leaf = (name, any::<String>()).prop_map(|(name, text)| Node {
            name,
            text,
            children: Vec::new(),
        });
        leaf.prop_recursive(4, 24, 5, move |inner| {
            (name, prop::collection::vec(inner, 1..5)).prop_map(|(name, children)| Node {
                name,
                text: String::new(),
                children,
            })
        })
    }

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

    #[test]
    fn carriage_returns_survive_a_round_trip() {
        // XML readers turn a raw CR into LF; keys and prefixes may hold CRs, so the writer
        // (quick-xml's escape) must send `&#13;`.
        let mut x = Xml::bare("R");
        x.elem("Key", "a\rb\r\nc");
        let doc = x.finish("R");
        assert!(doc.contains("a&#13;b&#13;\nc"), "{doc}");
        assert_eq!(
            parse(doc.as_bytes()).unwrap().child_text("Key"),
            Some("a\rb\r\nc")
        );
        let doc = Xml::text_document("LocationConstraint", "x\ry");
        assert_eq!(parse(doc.as_bytes()).unwrap().text, "x\ry");
    }

    proptest! {
        /// What our builder writes, the parser reads back as the same tree, whatever the text.
        #[test]
        fn written_trees_parse_back(root in tree()) {
            let mut x = Xml::new(&root.name);
            write(&mut x, &root);
            let mut root = root;
            if root.children.is_empty() {
                root.text = String::new();
            }
            prop_assert_eq!(parse(x.finish(&root.name).as_bytes()), Ok(root));
        }

        /// Arbitrary bytes, and mutations of a real body, never panic the parser.
        #[test]
        fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse(&raw);
        }

        #[test]
        fn mutated_bodies_never_panic(at in 0..200usize, bytes in prop::collection::vec(any::<u8>(), 1..8)) {
            let mut body = br#"<?xml version="1.0"?><Delete><Object><Key>a&amp;b</Key></Object><Quiet>true</Quiet><![CDATA[x]]><!-- c --></Delete>"#.to_vec();
            let at = at % body.len();
            body.splice(at..at, bytes);
            if let Ok(root) = parse(&body) {
                prop_assert!(!root.name.is_empty());
            }
        }
    }
}
