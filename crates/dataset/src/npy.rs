//! NumPy `.npy` files holding a 2-D C-order array. The byte layout is drawn
//! on [`Format::Npy`](crate::Format); the format's own specification is
//! `numpy.lib.format`.

use std::io::Write;
use std::path::Path;

use crate::files::{check_writable, write_file, write_rows};
use crate::{Element, ElementType, Error, Matrix, MAX_DIM};

/// Every `.npy` file starts with these six bytes.
const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// NumPy pads the preamble plus header to a multiple of this, so the data
/// starts aligned; the writer does the same. The reader does not require it.
const HEADER_ALIGNMENT: usize = 64;

/// Deepest nesting of tuples/lists the header parser follows. Real headers
/// nest at most two deep; the cap keeps a hostile header from exhausting
/// the stack.
const MAX_NESTING: usize = 16;

/// Where the rows of a `.npy` file are and what they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NpyLayout {
    /// What the data holds, from the header's `descr`.
    pub element: ElementType,
    /// First axis of the shape.
    pub rows: usize,
    /// Second axis of the shape.
    pub dim: usize,
    /// Byte offset of the first element (just past the header).
    pub data_offset: usize,
}

/// Parses and validates the preamble and header of the `.npy` file whose
/// bytes are `bytes`, and checks that the data is exactly as long as the
/// shape says.
///
/// # Errors
///
/// [`Error::Npy`] for anything malformed or unsupported, [`Error::Empty`]
/// for zero rows, [`Error::BadDimension`] for a second axis of zero or
/// above [`MAX_DIM`].
pub(crate) fn parse_layout(bytes: &[u8], path: &Path) -> Result<NpyLayout, Error> {
    let npy_error = |reason: String| Error::Npy {
        path: path.to_path_buf(),
        reason,
    };

    if !bytes.starts_with(MAGIC) {
        return Err(npy_error(
            "bad magic: the file does not start with \\x93NUMPY".into(),
        ));
    }
    let (Some(&major), Some(&minor)) = (bytes.get(6), bytes.get(7)) else {
        return Err(npy_error("file ends inside the version bytes".into()));
    };
    // Version 1 stores the header length as a u16; 2 and 3 widened it to a
    // u32 (and 3 made the header UTF-8 rather than latin-1).
    let length_field_bytes = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => {
            return Err(npy_error(format!(
                "unsupported format version {major}.{minor} (supported: 1.0, 2.0, 3.0)"
            )))
        }
    };
    let header_start = 8 + length_field_bytes;
    let header_len = match bytes.get(8..header_start) {
        Some(&[lo, hi]) => usize::from(u16::from_le_bytes([lo, hi])),
        Some(&[b0, b1, b2, b3]) => {
            usize::try_from(u32::from_le_bytes([b0, b1, b2, b3])).unwrap_or(usize::MAX)
        }
        _ => return Err(npy_error("file ends inside the header length".into())),
    };
    let header_end = header_start.saturating_add(header_len);
    let Some(header_bytes) = bytes.get(header_start..header_end) else {
        return Err(npy_error(format!(
            "header length {header_len} runs past the end of the file ({} bytes after the preamble)",
            bytes.len() - header_start
        )));
    };
    let header_text = if major >= 3 {
        std::str::from_utf8(header_bytes)
            .map_err(|_| npy_error("version 3 header is not valid UTF-8".into()))?
            .to_owned()
    } else {
        // Latin-1 maps each byte to the code point of the same value.
        header_bytes.iter().map(|&byte| char::from(byte)).collect()
    };
    let header = NpyHeader::parse(&header_text).map_err(npy_error)?;

    let element = ElementType::from_npy_descr(&header.descr).ok_or_else(|| {
        npy_error(format!(
            "unsupported dtype '{}' (supported: '<f4', '<i4', '|u1')",
            header.descr
        ))
    })?;
    if header.fortran_order {
        return Err(npy_error(
            "Fortran (column-major) order is not supported; save the array in C order".into(),
        ));
    }
    let &[rows, dim] = header.shape.as_slice() else {
        return Err(npy_error(format!(
            "expected a 2-D array, found a {}-D array of shape {}",
            header.shape.len(),
            format_shape(&header.shape)
        )));
    };
    let shape_text = format_shape(&header.shape);
    let too_large = || npy_error(format!("shape {shape_text} is too large for this machine"));
    let rows = usize::try_from(rows).map_err(|_| too_large())?;
    if rows == 0 {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    if dim == 0 || dim > MAX_DIM as u64 {
        return Err(Error::BadDimension {
            path: path.to_path_buf(),
            row: 0,
            dim: i64::try_from(dim).unwrap_or(i64::MAX),
        });
    }
    let dim = usize::try_from(dim).map_err(|_| too_large())?;
    let data_bytes = rows
        .checked_mul(dim)
        .and_then(|elements| elements.checked_mul(element.size()))
        .ok_or_else(too_large)?;
    let available = bytes.len() - header_end;
    if available != data_bytes {
        return Err(npy_error(format!(
            "shape {shape_text} of '{}' needs {data_bytes} data bytes but the file has {available}",
            header.descr
        )));
    }
    Ok(NpyLayout {
        element,
        rows,
        dim,
        data_offset: header_end,
    })
}

/// Writes `matrix` as a version 1.0 `.npy` file (2.0 if the header would
/// not fit version 1's 16-bit length, which a 2-D header never reaches).
pub(crate) fn write_npy<T: Element>(path: &Path, matrix: &Matrix<T>) -> Result<(), Error> {
    check_writable(path, matrix)?;
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': ({}, {}), }}",
        T::TYPE.npy_descr(),
        matrix.rows(),
        matrix.dim()
    );
    let preamble = |length_field_bytes: usize| MAGIC.len() + 2 + length_field_bytes;
    // Pad with spaces, then end with '\n', so that preamble + header is a
    // multiple of HEADER_ALIGNMENT, as NumPy does.
    let padded_len = |length_field_bytes: usize| {
        let unpadded = preamble(length_field_bytes) + dict.len() + 1;
        unpadded.next_multiple_of(HEADER_ALIGNMENT) - preamble(length_field_bytes)
    };
    let mut prefix = Vec::with_capacity(HEADER_ALIGNMENT * 2);
    prefix.extend_from_slice(MAGIC);
    let header_len = match u16::try_from(padded_len(2)) {
        Ok(header_len) => {
            prefix.extend_from_slice(&[1, 0]);
            prefix.extend_from_slice(&header_len.to_le_bytes());
            usize::from(header_len)
        }
        Err(_) => {
            let header_len = padded_len(4);
            let header_len_u32 = u32::try_from(header_len).map_err(|_| Error::Npy {
                path: path.to_path_buf(),
                reason: "header too long to write".into(),
            })?;
            prefix.extend_from_slice(&[2, 0]);
            prefix.extend_from_slice(&header_len_u32.to_le_bytes());
            header_len
        }
    };
    prefix.extend_from_slice(dict.as_bytes());
    prefix.resize(prefix.len() + header_len - dict.len() - 1, b' ');
    prefix.push(b'\n');

    write_file(path, |out| {
        out.write_all(&prefix)?;
        write_rows(out, matrix, &[])
    })
}

/// `(1000, 50)` style, as NumPy prints shapes.
fn format_shape(shape: &[u64]) -> String {
    match shape {
        [single] => format!("({single},)"),
        _ => {
            let axes: Vec<String> = shape.iter().map(u64::to_string).collect();
            format!("({})", axes.join(", "))
        }
    }
}

/// The three keys of a `.npy` header dict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NpyHeader {
    /// The dtype string, e.g. `<f4`.
    pub descr: String,
    /// Whether the data is column-major.
    pub fortran_order: bool,
    /// The array's shape, outermost axis first.
    pub shape: Vec<u64>,
}

impl NpyHeader {
    /// Parses a header dict such as
    /// `{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 50), }`.
    ///
    /// Accepts the keys in any order, either quote style, any whitespace,
    /// trailing commas, and Python 2 long suffixes (`1000L`). Other keys are
    /// ignored, as they carry nothing this crate needs.
    ///
    /// # Errors
    ///
    /// A description of the problem: malformed syntax, a missing or
    /// repeated key, or a key whose value has the wrong type.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let entries = LiteralParser::new(text).parse_header_dict()?;
        let mut descr = None;
        let mut fortran_order = None;
        let mut shape = None;
        for (key, value) in entries {
            let slot_taken = match key.as_str() {
                "descr" => descr.replace(value).is_some(),
                "fortran_order" => fortran_order.replace(value).is_some(),
                "shape" => shape.replace(value).is_some(),
                _ => false,
            };
            if slot_taken {
                return Err(format!("header repeats the key '{key}'"));
            }
        }
        let missing = |key: &str| format!("header has no '{key}' key");
        let descr = match descr.ok_or_else(|| missing("descr"))? {
            Literal::Str(descr) => descr,
            other => {
                return Err(format!(
                    "'descr' is {other:?}, not a simple dtype string (structured dtypes are not supported)"
                ))
            }
        };
        let fortran_order = match fortran_order.ok_or_else(|| missing("fortran_order"))? {
            Literal::Bool(fortran_order) => fortran_order,
            other => return Err(format!("'fortran_order' is {other:?}, not True or False")),
        };
        let shape = match shape.ok_or_else(|| missing("shape"))? {
            Literal::Tuple(axes) => axes
                .into_iter()
                .map(|axis| match axis {
                    Literal::Int(length) => Ok(length),
                    other => Err(format!("'shape' holds {other:?}, not an integer")),
                })
                .collect::<Result<Vec<u64>, String>>()?,
            other => return Err(format!("'shape' is {other:?}, not a tuple")),
        };
        Ok(NpyHeader {
            descr,
            fortran_order,
            shape,
        })
    }
}

/// The Python literals that can appear in a `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Literal {
    Str(String),
    Bool(bool),
    Int(u64),
    None,
    Tuple(Vec<Literal>),
    List(Vec<Literal>),
}

/// A recursive-descent parser for the small subset of Python literal syntax
/// NumPy writes in headers. The syntax is all ASCII, so it works on bytes;
/// string contents are cut from the text at quote positions, which are
/// always char boundaries.
struct LiteralParser<'a> {
    text: &'a str,
    position: usize,
}

impl<'a> LiteralParser<'a> {
    fn new(text: &'a str) -> Self {
        LiteralParser { text, position: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.position).copied()
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(|byte| byte.is_ascii_whitespace()) {
            self.position += 1;
        }
    }

    /// Skips whitespace, then consumes `expected` or says what was there.
    fn expect(&mut self, expected: u8) -> Result<(), String> {
        self.skip_whitespace();
        match self.peek() {
            Some(byte) if byte == expected => {
                self.position += 1;
                Ok(())
            }
            found => Err(self.unexpected(found, &format!("'{}'", char::from(expected)))),
        }
    }

    fn unexpected(&self, found: Option<u8>, wanted: &str) -> String {
        match found {
            Some(byte) => format!(
                "expected {wanted} at header byte {}, found '{}'",
                self.position,
                char::from(byte).escape_default()
            ),
            None => format!("expected {wanted}, but the header ends"),
        }
    }

    /// The whole header: one dict with string keys, then only whitespace.
    fn parse_header_dict(mut self) -> Result<Vec<(String, Literal)>, String> {
        self.expect(b'{')?;
        let mut entries = Vec::new();
        loop {
            self.skip_whitespace();
            if self.peek() == Some(b'}') {
                self.position += 1;
                break;
            }
            let key = match self.parse_value(0)? {
                Literal::Str(key) => key,
                other => return Err(format!("header dict key {other:?} is not a string")),
            };
            self.expect(b':')?;
            let value = self.parse_value(0)?;
            entries.push((key, value));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.position += 1,
                Some(b'}') => {
                    self.position += 1;
                    break;
                }
                found => return Err(self.unexpected(found, "',' or '}'")),
            }
        }
        self.skip_whitespace();
        match self.peek() {
            None => Ok(entries),
            found => Err(self.unexpected(found, "the end of the header after the dict")),
        }
    }

    fn parse_value(&mut self, depth: usize) -> Result<Literal, String> {
        self.skip_whitespace();
        match self.peek() {
            Some(quote @ (b'\'' | b'"')) => self.parse_string(quote),
            Some(b'(') => self.parse_sequence(b')', depth).map(Literal::Tuple),
            Some(b'[') => self.parse_sequence(b']', depth).map(Literal::List),
            Some(b'0'..=b'9') => self.parse_int(),
            Some(byte) if byte.is_ascii_alphabetic() => self.parse_keyword(),
            found => Err(self.unexpected(found, "a value")),
        }
    }

    /// A quoted string. Backslash escapes are kept verbatim (the character
    /// after a backslash never ends the string); no dtype NumPy writes in a
    /// plain `descr` contains one.
    fn parse_string(&mut self, quote: u8) -> Result<Literal, String> {
        let start = self.position + 1;
        let mut index = start;
        let bytes = self.text.as_bytes();
        loop {
            match bytes.get(index) {
                None => return Err("a string in the header is not terminated".into()),
                Some(b'\\') => index += 2,
                Some(&byte) if byte == quote => break,
                Some(_) => index += 1,
            }
        }
        self.position = index + 1;
        let content = self
            .text
            .get(start..index)
            .ok_or("a string in the header is malformed")?;
        Ok(Literal::Str(content.to_owned()))
    }

    /// Elements up to `close`, comma-separated, trailing comma allowed. A
    /// parenthesised single value without a comma is taken as a one-element
    /// tuple: being lenient there cannot misread any header NumPy writes.
    fn parse_sequence(&mut self, close: u8, depth: usize) -> Result<Vec<Literal>, String> {
        if depth >= MAX_NESTING {
            return Err(format!("header nests deeper than {MAX_NESTING} levels"));
        }
        self.position += 1; // the opening bracket
        let mut items = Vec::new();
        loop {
            self.skip_whitespace();
            if self.peek() == Some(close) {
                self.position += 1;
                return Ok(items);
            }
            items.push(self.parse_value(depth + 1)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.position += 1,
                Some(byte) if byte == close => {
                    self.position += 1;
                    return Ok(items);
                }
                found => {
                    let wanted = format!("',' or '{}'", char::from(close));
                    return Err(self.unexpected(found, &wanted));
                }
            }
        }
    }

    /// A non-negative decimal integer, with an optional Python 2 `L`.
    fn parse_int(&mut self) -> Result<Literal, String> {
        let start = self.position;
        while self.peek().is_some_and(|byte| byte.is_ascii_digit()) {
            self.position += 1;
        }
        let digits = &self.text[start..self.position];
        let value = digits
            .parse::<u64>()
            .map_err(|_| format!("integer {digits} in the header is too large"))?;
        if matches!(self.peek(), Some(b'L' | b'l')) {
            self.position += 1;
        }
        Ok(Literal::Int(value))
    }

    fn parse_keyword(&mut self) -> Result<Literal, String> {
        let start = self.position;
        while self
            .peek()
            .is_some_and(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
        {
            self.position += 1;
        }
        match &self.text[start..self.position] {
            "True" => Ok(Literal::Bool(true)),
            "False" => Ok(Literal::Bool(false)),
            "None" => Ok(Literal::None),
            word => Err(format!("unexpected word '{word}' in the header")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NpyHeader, String> {
        NpyHeader::parse(text)
    }

    fn header(descr: &str, fortran_order: bool, shape: &[u64]) -> NpyHeader {
        NpyHeader {
            descr: descr.into(),
            fortran_order,
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn parses_what_numpy_writes() {
        let text = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 50), }          \n";
        assert_eq!(parse(text), Ok(header("<f4", false, &[1000, 50])));
    }

    #[test]
    fn keys_in_any_order_and_either_quote() {
        let text = r#"{"shape": (3, 4), "fortran_order": True, 'descr': "<i4"}"#;
        assert_eq!(parse(text), Ok(header("<i4", true, &[3, 4])));
    }

    #[test]
    fn tolerates_whitespace_and_trailing_commas() {
        let text = "  {\n 'descr' :'|u1' ,\t'fortran_order':False,'shape':( 7 , 2 , ) , }\n";
        assert_eq!(parse(text), Ok(header("|u1", false, &[7, 2])));
    }

    #[test]
    fn shapes_of_any_rank() {
        let shape = |text: &str| parse(text).map(|header| header.shape);
        let dict =
            |shape: &str| format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}}}");
        assert_eq!(shape(&dict("()")), Ok(vec![]));
        assert_eq!(shape(&dict("(5,)")), Ok(vec![5]));
        assert_eq!(shape(&dict("(2, 3, 4)")), Ok(vec![2, 3, 4]));
        assert_eq!(shape(&dict("(1000L, 50L)")), Ok(vec![1000, 50]));
    }

    #[test]
    fn ignores_unknown_keys() {
        let text =
            "{'descr': '<f4', 'extra': [1, ('a', None)], 'fortran_order': False, 'shape': (1, 1)}";
        assert_eq!(parse(text), Ok(header("<f4", false, &[1, 1])));
    }

    #[test]
    fn rejects_missing_and_repeated_keys() {
        let missing = parse("{'descr': '<f4', 'fortran_order': False}").unwrap_err();
        assert!(missing.contains("'shape'"), "{missing}");
        let repeated =
            parse("{'descr': '<f4', 'descr': '<i4', 'fortran_order': False, 'shape': (1, 1)}")
                .unwrap_err();
        assert!(repeated.contains("repeats"), "{repeated}");
    }

    #[test]
    fn rejects_values_of_the_wrong_type() {
        let structured =
            parse("{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (1, 1)}")
                .unwrap_err();
        assert!(structured.contains("structured"), "{structured}");
        let order = parse("{'descr': '<f4', 'fortran_order': 0, 'shape': (1, 1)}").unwrap_err();
        assert!(order.contains("fortran_order"), "{order}");
        let shape = parse("{'descr': '<f4', 'fortran_order': False, 'shape': 5}").unwrap_err();
        assert!(shape.contains("not a tuple"), "{shape}");
        let axis =
            parse("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 'a')}").unwrap_err();
        assert!(axis.contains("not an integer"), "{axis}");
    }

    #[test]
    fn rejects_malformed_syntax() {
        for text in [
            "",
            "   ",
            "'descr': '<f4'",
            "{'descr': '<f4'",
            "{'descr': '<f4, 'fortran_order': False, 'shape': (1, 1)}",
            "{'descr' '<f4'}",
            "{'descr': '<f4',, }",
            "{'descr': '<f4'} trailing",
            "{descr: '<f4'}",
            "{'shape': (1, 2}",
            "{'shape': (-1, 2)}",
            "{'shape': (99999999999999999999999, 2)}",
            "{'fortran_order': Maybe}",
            "{1: 2}",
        ] {
            assert!(parse(text).is_err(), "accepted {text:?}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let text = format!("{{'x': {}}}", "(".repeat(100_000));
        let error = parse(&text).unwrap_err();
        assert!(error.contains("nests deeper"), "{error}");
    }

    #[test]
    fn non_ascii_text_does_not_panic() {
        assert!(parse("{'descr': '<f4', 'é': False}").is_err());
        assert!(parse("{'descé': 'ü', 'fortran_order': False, 'shape': (1, 1)}").is_err());
        assert!(parse("{é}").is_err());
    }
}
