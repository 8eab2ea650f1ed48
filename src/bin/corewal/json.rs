//! JSON written by hand: a few value kinds and an object that keeps its
//! fields in order. Shared by `bench --json` and the WAL tools, so that the
//! binary needs no serializer crate.

use std::fmt;

/// A value written into a JSON line.
pub trait JsonValue {
    fn write_json(&self, out: &mut String);
}

impl JsonValue for bool {
    fn write_json(&self, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
}

macro_rules! json_integer {
    ($($t:ty),*) => {$(
        impl JsonValue for $t {
            fn write_json(&self, out: &mut String) {
                use std::fmt::Write;
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
json_integer!(u32, u64, usize, i64);

impl JsonValue for f64 {
    fn write_json(&self, out: &mut String) {
        // JSON has no NaN or infinity.
        if self.is_finite() {
            out.push_str(&self.to_string());
        } else {
            out.push_str("null");
        }
    }
}

impl JsonValue for &str {
    fn write_json(&self, out: &mut String) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        out.reserve(self.len() + 2);
        out.push('"');
        // Runs that need no escape are copied whole.
        let mut start = 0;
        for (i, &b) in self.as_bytes().iter().enumerate() {
            if b != b'"' && b != b'\\' && b >= 0x20 {
                continue;
            }
            out.push_str(&self[start..i]);
            match b {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                _ => {
                    out.push_str("\\u00");
                    out.push(DIGITS[usize::from(b >> 4)] as char);
                    out.push(DIGITS[usize::from(b & 15)] as char);
                }
            }
            start = i + 1;
        }
        out.push_str(&self[start..]);
        out.push('"');
    }
}

impl JsonValue for String {
    fn write_json(&self, out: &mut String) {
        self.as_str().write_json(out);
    }
}

/// `None` is `null`.
impl<T: JsonValue> JsonValue for Option<T> {
    fn write_json(&self, out: &mut String) {
        match self {
            Some(v) => v.write_json(out),
            None => out.push_str("null"),
        }
    }
}

/// A slice is an array.
impl<T: JsonValue> JsonValue for &[T] {
    fn write_json(&self, out: &mut String) {
        out.push('[');
        for (i, item) in self.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            item.write_json(out);
        }
        out.push(']');
    }
}

/// Bytes as a JSON string of lowercase hex digits.
pub struct Hex<'a>(pub &'a [u8]);

impl JsonValue for Hex<'_> {
    fn write_json(&self, out: &mut String) {
        out.reserve(self.0.len() * 2 + 2);
        out.push('"');
        push_hex(out, self.0);
        out.push('"');
    }
}

/// Appends `bytes` as lowercase hex digits.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
}

/// A JSON object that keeps its fields in the order they were added, so
/// every line reads `{"id":..,"workload":..,..}`.
#[derive(Debug, Default)]
pub struct JsonObject {
    fields: Vec<(&'static str, String)>,
}

impl JsonObject {
    pub fn field(&mut self, key: &'static str, value: impl JsonValue) {
        let mut text = String::new();
        value.write_json(&mut text);
        self.fields.push((key, text));
    }

    pub fn object(&mut self, key: &'static str, value: JsonObject) {
        self.fields.push((key, value.to_string()));
    }

    pub fn objects(&mut self, key: &'static str, values: impl Iterator<Item = JsonObject>) {
        let items: Vec<String> = values.map(|v| v.to_string()).collect();
        self.fields.push((key, format!("[{}]", items.join(","))));
    }
}

impl fmt::Display for JsonObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (key, value)) in self.fields.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let mut name = String::new();
            key.write_json(&mut name);
            write!(f, "{sep}{name}:{value}")?;
        }
        f.write_str("}")
    }
}

/// Writes one JSON object straight into a buffer, field by field, for
/// output where building a [`JsonObject`] per line would cost too much
/// (`dump --json` writes millions of lines).
pub struct JsonWriter<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> JsonWriter<'a> {
    /// Opens an object at the end of `out`; [`JsonWriter::finish`] closes it.
    pub fn new(out: &'a mut String) -> JsonWriter<'a> {
        out.push('{');
        JsonWriter { out, empty: true }
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        key.write_json(self.out);
        self.out.push(':');
    }

    pub fn field(&mut self, key: &str, value: impl JsonValue) {
        self.key(key);
        value.write_json(self.out);
    }

    /// An array of objects, each written by `each`.
    pub fn objects<T>(
        &mut self,
        key: &str,
        items: impl Iterator<Item = T>,
        mut each: impl FnMut(&mut JsonWriter<'_>, T),
    ) {
        self.key(key);
        self.out.push('[');
        for (i, item) in items.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let mut object = JsonWriter::new(self.out);
            each(&mut object, item);
            object.finish();
        }
        self.out.push(']');
    }

    pub fn finish(self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped_and_non_finite_numbers_are_null() {
        let mut o = JsonObject::default();
        o.field("text", "a \"quoted\" \\ line\n");
        o.field("nan", f64::NAN);
        let json: serde_json::Value = serde_json::from_str(&o.to_string()).unwrap();
        assert_eq!(json["text"], "a \"quoted\" \\ line\n");
        assert!(json["nan"].is_null());
    }

    #[test]
    fn options_hex_and_negative_numbers() {
        let mut o = JsonObject::default();
        o.field("none", None::<u64>);
        o.field("some", Some(-5i64));
        o.field("hex", Hex(&[0x00, 0xab, 0x7f]));
        o.field("array", [1.5f64, f64::NAN].as_slice());
        o.field("empty", &[] as &[u64]);
        o.objects(
            "list",
            [1u64, 2].into_iter().map(|n| {
                let mut item = JsonObject::default();
                item.field("n", n);
                item
            }),
        );
        let want = r#"{"none":null,"some":-5,"hex":"00ab7f","list":[{"n":1},{"n":2}]}"#;
        let with_arrays = want.replace(r#""list""#, r#""array":[1.5,null],"empty":[],"list""#);
        assert_eq!(o.to_string(), with_arrays);

        let mut line = String::new();
        let mut w = JsonWriter::new(&mut line);
        w.field("none", None::<u64>);
        w.field("some", Some(-5i64));
        w.field("hex", Hex(&[0x00, 0xab, 0x7f]));
        w.objects("list", [1u64, 2].into_iter(), |item, n| item.field("n", n));
        w.finish();
        assert_eq!(line, want);
    }

    #[test]
    fn every_control_character_is_escaped() {
        let text: String = (0u8..0x20).map(char::from).chain("\"é\\".chars()).collect();
        let mut out = String::new();
        text.as_str().write_json(&mut out);
        assert!(out.starts_with(r#""\u0000\u0001"#), "{out}");
        assert!(out.ends_with(r#"\u001f\"é\\""#), "{out}");
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, text);
    }
}
