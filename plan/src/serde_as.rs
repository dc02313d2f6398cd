//! How AST values without serde support are written in plan JSON: a
//! reference as its text (`"claim.sub"`), a method as `"GET"`, algorithms as
//! `["RS256"]`. Reading them back accepts only what the language accepts.

use crate::words::{Algorithm, Method, Reference};
use serde::de::Error;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub mod reference {
    use super::*;

    pub fn serialize<S: Serializer>(r: &Reference, s: S) -> Result<S::Ok, S::Error> {
        r.to_string().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Reference, D::Error> {
        let text = String::deserialize(d)?;
        Reference::parse(&text)
            .ok_or_else(|| D::Error::custom(format!("`{text}` is not a reference such as `claim.sub`")))
    }
}

pub mod method {
    use super::*;

    pub fn serialize<S: Serializer>(m: &Method, s: S) -> Result<S::Ok, S::Error> {
        m.as_str().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Method, D::Error> {
        let text = String::deserialize(d)?;
        Method::parse(&text).ok_or_else(|| D::Error::custom(format!("`{text}` is not an HTTP method")))
    }
}

pub mod algorithms {
    use super::*;

    pub fn serialize<S: Serializer>(list: &[Algorithm], s: S) -> Result<S::Ok, S::Error> {
        list.iter().map(|a| a.as_str()).collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Algorithm>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|text| {
                Algorithm::parse(text).ok_or_else(|| D::Error::custom(format!("`{text}` is not a JWT algorithm")))
            })
            .collect()
    }
}

pub mod opt_reference {
    use super::*;

    pub fn serialize<S: Serializer>(r: &Option<Reference>, s: S) -> Result<S::Ok, S::Error> {
        r.as_ref().map(Reference::to_string).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Reference>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => Reference::parse(&text)
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("`{text}` is not a reference such as `cookie.session`"))),
        }
    }
}
