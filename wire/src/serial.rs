//! Certificate serial numbers.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A positive certificate serial number, kept as its minimal big-endian magnitude. On the
/// wire and in the store it is lowercase hexadecimal without leading zero bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

/// A serial number that could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid serial number {0:?}: expected 1 to 20 bytes of hexadecimal")]
pub struct SerialParseError(pub String);

impl Serial {
    /// From big-endian magnitude bytes (leading zeros are dropped; zero stays one byte).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let start = bytes
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(bytes.len().saturating_sub(1));
        Self(bytes.get(start..).unwrap_or(&[0]).to_vec())
    }

    /// From a DER INTEGER's content bytes (two's complement; a leading 0x00 is dropped).
    pub fn from_der_integer(bytes: &[u8]) -> Self {
        Self::from_bytes(bytes)
    }

    /// Parses hexadecimal, with optional `0x` prefix and `:` separators, any case.
    pub fn from_hex(text: &str) -> Result<Self, SerialParseError> {
        let err = || SerialParseError(text.to_owned());
        let trimmed = text.trim();
        let body = trimmed.strip_prefix("0x").unwrap_or(trimmed);
        let digits = body.bytes().filter(|b| *b != b':');
        let count = digits.clone().count();
        if count == 0 || count > 40 {
            return Err(err());
        }
        let mut bytes = Vec::with_capacity(count.div_ceil(2));
        // With an odd number of digits the first byte has only a low nibble.
        let mut high: Option<u8> = if count % 2 == 1 { Some(0) } else { None };
        for b in digits {
            let v = char::from(b).to_digit(16).ok_or_else(err)? as u8;
            match high.take() {
                Some(h) => bytes.push(h << 4 | v),
                None => high = Some(v),
            }
        }
        Ok(Self::from_bytes(&bytes))
    }

    /// Lowercase hexadecimal of the magnitude (the store's and the API's form).
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// The magnitude bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({})", self.to_hex())
    }
}

impl std::str::FromStr for Serial {
    type Err = SerialParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_hex(text)
    }
}

impl Serialize for Serial {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Serial {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hex_forms_parse_to_the_same_serial() {
        let a = Serial::from_hex("00:AB:cd").unwrap();
        let b = Serial::from_hex("0xabcd").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_hex(), "abcd");
        assert!(Serial::from_hex("xyz").is_err());
        assert!(Serial::from_hex("").is_err());
        assert!(Serial::from_hex(&"1".repeat(41)).is_err());
    }

    #[test]
    fn serials_travel_as_lowercase_hex() {
        let serial = Serial::from_der_integer(&[0x00, 0x9f, 0x01]);
        assert_eq!(serde_json::to_string(&serial).unwrap(), "\"9f01\"");
        let back: Serial = serde_json::from_str("\"9F01\"").unwrap();
        assert_eq!(back, serial);
        assert!(serde_json::from_str::<Serial>("\"not hex\"").is_err());
    }
}
