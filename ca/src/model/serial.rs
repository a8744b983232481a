//! Certificate serial numbers.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Serialize, Serializer};

/// A positive certificate serial number, kept as its minimal big-endian magnitude.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

/// A serial number that could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid serial number {0:?}: expected 1 to 20 bytes of hexadecimal")]
pub struct SerialParseError(pub String);

impl Serial {
    /// A fresh random serial with 128 bits of entropy (positive, at most 17 DER bytes).
    pub fn random() -> Result<Self, ring::error::Unspecified> {
        let mut bytes = [0u8; 16];
        SystemRandom::new().fill(&mut bytes)?;
        Ok(Self::from_bytes(&bytes))
    }

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

impl Serialize for Serial {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
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
    fn random_serials_differ() {
        assert_ne!(Serial::random().unwrap(), Serial::random().unwrap());
    }
}
