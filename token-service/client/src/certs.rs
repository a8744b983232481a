//! Certificates and keys as the protocol handles them: PEM blocks, serials, fingerprints.

use herald_wire::{Group, GroupError, Serial};

/// The first `-----BEGIN ...-----` to `-----END ...-----` block of a PEM text.
pub fn first_pem_block(text: &str) -> String {
    let start = text.find("-----BEGIN").unwrap_or(0);
    let rest = &text[start..];
    rest.find("-----END")
        .and_then(|i| rest[i..].find('\n').map(|j| rest[..i + j + 1].to_owned()))
        .unwrap_or_else(|| rest.to_owned())
}

/// The DER of the first certificate of a PEM text.
pub fn first_certificate_der(text: &str) -> Option<Vec<u8>> {
    match der::pem::decode_vec(first_pem_block(text).as_bytes()) {
        Ok(("CERTIFICATE", der)) => Some(der),
        _ => None,
    }
}

/// The serial of a certificate (DER), as the authority names certificates.
pub fn certificate_serial(der: &[u8]) -> Option<Serial> {
    use der::Decode;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    Some(Serial::from_der_integer(
        cert.tbs_certificate.serial_number.as_bytes(),
    ))
}

/// True when the first certificate of `cert_pem` certifies the public key `spki_der`.
pub fn certifies(cert_pem: &str, spki_der: &[u8]) -> bool {
    use der::{Decode, Encode};
    first_certificate_der(cert_pem)
        .and_then(|der| x509_cert::Certificate::from_der(&der).ok())
        .and_then(|cert| cert.tbs_certificate.subject_public_key_info.to_der().ok())
        .is_some_and(|spki| spki == spki_der)
}

/// Lowercase hex SHA-256 (fingerprints of certificates, keys, bodies and token secrets).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// Who an endpoint certificate names: the endpoint (its Subject's commonName, the allocated
/// `BASE-NNNN`) and its group (the Subject's one organizationalUnitName; none means
/// [`Group::DEFAULT`]). The authority writes both at issuance and renewal;
/// the endpoint reads them from its own certificate, which no mirror or relay can alter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointIdentity {
    /// The endpoint's name.
    pub name: String,
    /// The endpoint's group.
    pub group: Group,
}

/// Why a certificate does not name an endpoint and its group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The bytes are not a DER certificate.
    #[error("not a DER certificate")]
    NotCertificate,
    /// The Subject has no commonName, or more than one.
    #[error("the certificate's Subject must hold exactly one commonName (the endpoint's name)")]
    Name,
    /// The Subject holds more than one organizationalUnitName.
    #[error(
        "the certificate's Subject holds several organizationalUnitNames; one group is expected"
    )]
    SeveralGroups,
    /// A name attribute is not a string.
    #[error("a Subject attribute is not a text string")]
    Encoding,
    /// The organizationalUnitName is not a valid group name.
    #[error("the certificate's organizationalUnitName: {0}")]
    BadGroup(GroupError),
}

/// The endpoint name and group of a certificate (DER): exactly one commonName, at most one
/// organizationalUnitName (the group; absent: `default`), which must be a valid group name
/// ([`Group::new`]).
pub fn identity_of_certificate(der: &[u8]) -> Result<EndpointIdentity, IdentityError> {
    use der::asn1::{Ia5StringRef, ObjectIdentifier, PrintableStringRef, Utf8StringRef};
    use der::{Decode, Tag, Tagged};
    const CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
    const OU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.11");

    let cert = x509_cert::Certificate::from_der(der).map_err(|_| IdentityError::NotCertificate)?;
    let text = |value: &der::Any| -> Result<String, IdentityError> {
        let decoded = match value.tag() {
            Tag::Utf8String => value
                .decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.to_string()),
            Tag::PrintableString => value
                .decode_as::<PrintableStringRef<'_>>()
                .map(|s| s.to_string()),
            Tag::Ia5String => value.decode_as::<Ia5StringRef<'_>>().map(|s| s.to_string()),
            _ => return Err(IdentityError::Encoding),
        };
        decoded.map_err(|_| IdentityError::Encoding)
    };
    let mut names = Vec::new();
    let mut groups = Vec::new();
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == CN {
                names.push(text(&atv.value)?);
            } else if atv.oid == OU {
                groups.push(text(&atv.value)?);
            }
        }
    }
    let [name] = <[String; 1]>::try_from(names).map_err(|_| IdentityError::Name)?;
    let group = match <[String; 1]>::try_from(groups) {
        Ok([group]) => Group::new(&group).map_err(IdentityError::BadGroup)?,
        Err(groups) if groups.is_empty() => Group::default(),
        Err(_) => return Err(IdentityError::SeveralGroups),
    };
    Ok(EndpointIdentity { name, group })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn certificate(cn: Option<&str>, ous: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        for (i, ou) in ous.iter().enumerate() {
            // rcgen keeps one value per attribute type: a second OU goes in under the OU's
            // object identifier spelled as a custom type.
            let kind = if i == 0 {
                rcgen::DnType::OrganizationalUnitName
            } else {
                rcgen::DnType::CustomDnType(vec![2, 5, 4, 11])
            };
            params.distinguished_name.push(kind, *ou);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn name_is_the_common_name_and_group_the_one_ou() {
        let id = identity_of_certificate(&certificate(Some("LAPTOP-0042"), &["pilot"])).unwrap();
        assert_eq!(
            id,
            EndpointIdentity {
                name: "LAPTOP-0042".into(),
                group: Group::new("pilot").unwrap()
            }
        );
    }

    #[test]
    fn no_ou_means_the_default_group() {
        let id = identity_of_certificate(&certificate(Some("KIOSK-0001"), &[])).unwrap();
        assert!(id.group.is_default());
        assert_eq!(id.group.as_str(), Group::DEFAULT);
    }

    #[test]
    fn several_groups_a_bad_group_or_no_name_are_refused() {
        assert_eq!(
            identity_of_certificate(&certificate(Some("A-0001"), &["pilot", "beta"])),
            Err(IdentityError::SeveralGroups)
        );
        assert_eq!(
            identity_of_certificate(&certificate(Some("A-0001"), &["Pilot Group"])),
            Err(IdentityError::BadGroup(GroupError("Pilot Group".into())))
        );
        assert_eq!(
            identity_of_certificate(&certificate(None, &["pilot"])),
            Err(IdentityError::Name)
        );
        assert_eq!(
            identity_of_certificate(b"not a certificate"),
            Err(IdentityError::NotCertificate)
        );
    }
}
