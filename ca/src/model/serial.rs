//! Certificate serial numbers: the one [`Serial`] type of `herald-wire`, shared with the
//! token service and endpoints, and fresh random serials for issuance.

use ring::rand::{SecureRandom, SystemRandom};

pub use herald_wire::{Serial, SerialParseError};

/// A fresh random serial with 128 bits of entropy (positive, at most 17 DER bytes).
pub fn random() -> Result<Serial, ring::error::Unspecified> {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes)?;
    Ok(Serial::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn random_serials_differ() {
        assert_ne!(random().unwrap(), random().unwrap());
    }
}
