//! Sensitivity labels.
//!
//! A label names a class of information with its own key and its own access rules.
//! The defaults follow HL7 v3 confidentiality codes (N, R, V) and the sensitivity
//! categories of the HL7 ActCode system; [`Label::hl7_code`] gives the mapping.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// A sensitivity label: lowercase ASCII letters, digits and `-`, 1 to 32 characters.
///
/// Built-in labels borrow a static name, so making, cloning and decoding them does not
/// allocate (every read of a document handles a dozen of them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label(Cow<'static, str>);

/// A sorted set of labels; a field or group needs every one of them to be read.
pub type LabelSet = BTreeSet<Label>;

macro_rules! labels {
    ($($(#[$doc:meta])* $konst:ident = $name:literal, $hl7:literal;)*) => {
        impl Label {
            $( $(#[$doc])* pub fn $konst() -> Label { Label(Cow::Borrowed($name)) } )*

            /// Every built-in label.
            pub fn builtin() -> Vec<Label> {
                vec![$(Label(Cow::Borrowed($name))),*]
            }

            /// The built-in label named `s`, without allocating.
            fn builtin_named(s: &str) -> Option<Label> {
                match s {
                    $($name => Some(Label(Cow::Borrowed($name))),)*
                    _ => None,
                }
            }

            /// The HL7 v3 code this label corresponds to (Confidentiality or ActCode), if built in.
            pub fn hl7_code(&self) -> Option<&'static str> {
                match &*self.0 {
                    $($name => Some($hl7),)*
                    _ => None,
                }
            }
        }
    };
}

labels! {
    /// Ordinary clinical information (HL7 confidentiality N).
    normal = "normal", "N";
    /// Restricted clinical information, such as note text (HL7 confidentiality R).
    restricted = "restricted", "R";
    /// Very restricted information (HL7 confidentiality V), such as VIP flags.
    very_restricted = "very-restricted", "V";
    /// Demographics and direct identifiers (name, address, contact, identifiers).
    demographics = "demographics", "DEMO";
    /// Financial and payment information.
    financial = "financial", "FIN";
    /// Mental health information (HL7 ActCode PSY / MH).
    mental_health = "mental-health", "PSY";
    /// Psychotherapy notes, 45 CFR 164.501 (HL7 ActCode PSYTHPN).
    psychotherapy = "psychotherapy", "PSYTHPN";
    /// Substance use disorder records under 42 CFR Part 2 (HL7 ActCode ETH / 42CFRPart2).
    substance_use = "substance-use", "ETH";
    /// HIV/AIDS and sexually transmitted infections (HL7 ActCode HIV / STD).
    hiv_sti = "hiv-sti", "HIV";
    /// Genetic information (HL7 ActCode GDIS).
    genetic = "genetic", "GDIS";
    /// Sexual and reproductive health (HL7 ActCode SEX).
    reproductive = "reproductive", "SEX";
}

impl Label {
    /// Validates and builds a label.
    ///
    /// ```
    /// use chartvault::Label;
    /// assert_eq!(Label::new("hiv-sti").unwrap(), Label::hiv_sti());
    /// assert!(Label::new("Not Valid").is_err());
    /// ```
    pub fn new(s: &str) -> Result<Self> {
        if let Some(l) = Label::builtin_named(s) {
            return Ok(l);
        }
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Label(Cow::Owned(s.to_string())))
        } else {
            Err(Error::InvalidDocument(format!(
                "invalid label {:?}: use 1-32 lowercase letters, digits or '-'",
                s.chars().take(40).collect::<String>()
            )))
        }
    }

    /// Maps an HL7 confidentiality or sensitivity code (as found in FHIR `meta.security`)
    /// to a built-in label.
    pub fn from_hl7(code: &str) -> Option<Label> {
        Some(match code {
            "N" | "L" | "M" | "U" => Label::normal(),
            "R" => Label::restricted(),
            "V" => Label::very_restricted(),
            "PSY" | "MH" => Label::mental_health(),
            "PSYTHPN" => Label::psychotherapy(),
            "ETH" | "SUD" | "42CFRPart2" => Label::substance_use(),
            "HIV" | "STD" => Label::hiv_sti(),
            "GDIS" => Label::genetic(),
            "SEX" | "SDV" => Label::reproductive(),
            "TBOO" => Label::restricted(),
            _ => return None,
        })
    }

    /// The label's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Label {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Label::new(&s)
    }
}

impl From<Label> for String {
    fn from(l: Label) -> String {
        l.0.into_owned()
    }
}

impl Serialize for Label {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Label;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sensitivity label")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<Label, E> {
                Label::new(s).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl std::str::FromStr for Label {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Label::new(s)
    }
}
