//! What a FETCH asks for inside a message: `BODY[section]<partial>` and `BINARY[part]`
//! (RFC 3501 §6.4.5, RFC 9051 §6.4.5, RFC 3516).

/// A body section specifier: a part path, then what of that part.
///
/// `BODY[]` is `Section { part: vec![], text: None }`; `BODY[1.2.MIME]` is
/// `Section { part: vec![1, 2], text: Some(SectionText::Mime) }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    /// The part numbers, outermost first (1-based); empty for the whole message.
    pub part: Vec<u32>,
    /// What of the part; `None` for all of it (its header and body, or for a non-multipart
    /// leaf at a part path, its body).
    pub text: Option<SectionText>,
}

/// The text of a section (RFC 3501 §6.4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    /// `HEADER`: the header of the message (or of an encapsulated message/rfc822 part), with
    /// the blank line that ends it.
    Header,
    /// `HEADER.FIELDS (names)`: only those fields, then a blank line.
    HeaderFields(Vec<String>),
    /// `HEADER.FIELDS.NOT (names)`: every field but those, then a blank line.
    HeaderFieldsNot(Vec<String>),
    /// `TEXT`: the body of the message (or of an encapsulated message), without its header.
    Text,
    /// `MIME`: the MIME header of a body part (only with a part path).
    Mime,
}
