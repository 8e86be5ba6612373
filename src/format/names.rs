//! The static dictionaries of the envelope codec (docs/FORMAT.md §10.2.1): field
//! names, labels and kinds that an envelope stores as one byte instead of a string.
//!
//! Like HPACK's static table, these lists are part of the file format: an entry's
//! position is its code, so entries are only ever appended (codes 1 to 127, one
//! varint byte; 0 means "a literal string follows"), never reordered or removed.
//!
//! The field names are the schema's indexed and specially labelled names followed by
//! the top-level element names of the HL7 FHIR R4 examples (spec package 4.0.1 and the
//! Synthea bundles in the project's test data), by frequency, with choice-type
//! suffixes removed (`valueQuantity` is `value`), as chartvault documents name them.

/// Field names with a one-byte code: entry `i` has code `i + 1`.
pub const FIELD_NAMES: &[&str] = &[
    "code",
    "category",
    "status",
    "effective",
    "date",
    "onset",
    "issued",
    "authored",
    "performed",
    "occurrence",
    "identifier",
    "birthDate",
    "value",
    "type",
    "note",
    "text",
    "conclusion",
    "subject",
    "encounter",
    "performer",
    "referenceRange",
    "patient",
    "name",
    "interpretation",
    "address",
    "gender",
    "telecom",
    "total",
    "insurance",
    "created",
    "use",
    "billablePeriod",
    "provider",
    "item",
    "intent",
    "period",
    "dosageInstruction",
    "result",
    "reasonCode",
    "requester",
    "priority",
    "careTeam",
    "participant",
    "medication",
    "active",
    "authoredOn",
    "class",
    "managingOrganization",
    "serviceProvider",
    "outcome",
    "entry",
    "insurer",
    "referral",
    "claim",
    "payment",
    "specimen",
    "clinicalStatus",
    "component",
    "verificationStatus",
    "recordedDate",
    "diagnosis",
    "authorizingPrescription",
    "vaccineCode",
    "primarySource",
    "quantity",
    "daysSupply",
    "whenPrepared",
    "organization",
    "dispenseRequest",
    "bodySite",
    "form",
    "basedOn",
    "reasonReference",
    "supportingInfo",
    "description",
    "derivedFrom",
    "ingredient",
    "substitution",
    "addresses",
    "activity",
    "whenHandedOver",
    "location",
    "dosage",
    "request",
    "contact",
    "practitioner",
    "link",
    "connectionType",
    "payloadType",
    "payloadMimeType",
    "manufacturer",
    "specialty",
    "context",
    "hasMember",
    "goal",
    "scope",
    "dateTime",
    "policyRule",
    "provision",
    "relationship",
    "lifecycleStatus",
    "coordinateSystem",
    "referenceSeq",
    "observedSeq",
    "procedure",
    "partOf",
    "severity",
    "achievementStatus",
    "prescription",
    "batch",
    "abatement",
    "source",
    "asserter",
    "recorder",
    "deceased",
    "mode",
    "accessionIdentifier",
    "collection",
    "statusReason",
    "supportingInformation",
    "author",
    "dateAsserted",
    "communication",
    "photo",
    "container",
    "followUp",
    "informationSource",
];

/// Labels with a one-byte code (the built-in labels, in their declaration order).
pub const LABELS: &[&str] = &[
    "normal",
    "restricted",
    "very-restricted",
    "demographics",
    "financial",
    "mental-health",
    "psychotherapy",
    "substance-use",
    "hiv-sti",
    "genetic",
    "reproductive",
];

/// Kinds with a one-byte code (the built-in kinds, in their declaration order).
pub const KINDS: &[&str] = &[
    "Patient",
    "Observation",
    "Condition",
    "MedicationRequest",
    "AllergyIntolerance",
    "Encounter",
    "DiagnosticReport",
    "ImagingStudy",
    "Procedure",
    "Immunization",
    "ClinicalNote",
    "PsychotherapyNote",
    "DocumentReference",
    "Coverage",
    "Claim",
    "Consent",
];

/// One static dictionary: entries by code, and codes by entry (a `match`, so a lookup
/// neither hashes nor allocates).
pub struct Table {
    entries: &'static [&'static str],
    lookup: fn(&str) -> Option<u8>,
}

impl Table {
    /// The code (1 to 127) of `s`, if it is in the table.
    pub fn code(&self, s: &str) -> Option<u8> {
        (self.lookup)(s)
    }

    /// The entry with code `code`, if there is one.
    pub fn entry(&self, code: u64) -> Option<&'static str> {
        let i = usize::try_from(code).ok()?.checked_sub(1)?;
        self.entries.get(i).copied()
    }
}

/// The field-name dictionary.
pub static FIELDS: Table = Table { entries: FIELD_NAMES, lookup: field_code };
/// The label dictionary.
pub static LABEL_TABLE: Table = Table { entries: LABELS, lookup: label_code };
/// The kind dictionary.
pub static KIND_TABLE: Table = Table { entries: KINDS, lookup: kind_code };

// The arms repeat the lists above; `match_arms_agree_with_the_lists` checks that.
fn field_code(s: &str) -> Option<u8> {
    Some(match s {
        "code" => 1,
        "category" => 2,
        "status" => 3,
        "effective" => 4,
        "date" => 5,
        "onset" => 6,
        "issued" => 7,
        "authored" => 8,
        "performed" => 9,
        "occurrence" => 10,
        "identifier" => 11,
        "birthDate" => 12,
        "value" => 13,
        "type" => 14,
        "note" => 15,
        "text" => 16,
        "conclusion" => 17,
        "subject" => 18,
        "encounter" => 19,
        "performer" => 20,
        "referenceRange" => 21,
        "patient" => 22,
        "name" => 23,
        "interpretation" => 24,
        "address" => 25,
        "gender" => 26,
        "telecom" => 27,
        "total" => 28,
        "insurance" => 29,
        "created" => 30,
        "use" => 31,
        "billablePeriod" => 32,
        "provider" => 33,
        "item" => 34,
        "intent" => 35,
        "period" => 36,
        "dosageInstruction" => 37,
        "result" => 38,
        "reasonCode" => 39,
        "requester" => 40,
        "priority" => 41,
        "careTeam" => 42,
        "participant" => 43,
        "medication" => 44,
        "active" => 45,
        "authoredOn" => 46,
        "class" => 47,
        "managingOrganization" => 48,
        "serviceProvider" => 49,
        "outcome" => 50,
        "entry" => 51,
        "insurer" => 52,
        "referral" => 53,
        "claim" => 54,
        "payment" => 55,
        "specimen" => 56,
        "clinicalStatus" => 57,
        "component" => 58,
        "verificationStatus" => 59,
        "recordedDate" => 60,
        "diagnosis" => 61,
        "authorizingPrescription" => 62,
        "vaccineCode" => 63,
        "primarySource" => 64,
        "quantity" => 65,
        "daysSupply" => 66,
        "whenPrepared" => 67,
        "organization" => 68,
        "dispenseRequest" => 69,
        "bodySite" => 70,
        "form" => 71,
        "basedOn" => 72,
        "reasonReference" => 73,
        "supportingInfo" => 74,
        "description" => 75,
        "derivedFrom" => 76,
        "ingredient" => 77,
        "substitution" => 78,
        "addresses" => 79,
        "activity" => 80,
        "whenHandedOver" => 81,
        "location" => 82,
        "dosage" => 83,
        "request" => 84,
        "contact" => 85,
        "practitioner" => 86,
        "link" => 87,
        "connectionType" => 88,
        "payloadType" => 89,
        "payloadMimeType" => 90,
        "manufacturer" => 91,
        "specialty" => 92,
        "context" => 93,
        "hasMember" => 94,
        "goal" => 95,
        "scope" => 96,
        "dateTime" => 97,
        "policyRule" => 98,
        "provision" => 99,
        "relationship" => 100,
        "lifecycleStatus" => 101,
        "coordinateSystem" => 102,
        "referenceSeq" => 103,
        "observedSeq" => 104,
        "procedure" => 105,
        "partOf" => 106,
        "severity" => 107,
        "achievementStatus" => 108,
        "prescription" => 109,
        "batch" => 110,
        "abatement" => 111,
        "source" => 112,
        "asserter" => 113,
        "recorder" => 114,
        "deceased" => 115,
        "mode" => 116,
        "accessionIdentifier" => 117,
        "collection" => 118,
        "statusReason" => 119,
        "supportingInformation" => 120,
        "author" => 121,
        "dateAsserted" => 122,
        "communication" => 123,
        "photo" => 124,
        "container" => 125,
        "followUp" => 126,
        "informationSource" => 127,
        _ => return None,
    })
}

fn label_code(s: &str) -> Option<u8> {
    Some(match s {
        "normal" => 1,
        "restricted" => 2,
        "very-restricted" => 3,
        "demographics" => 4,
        "financial" => 5,
        "mental-health" => 6,
        "psychotherapy" => 7,
        "substance-use" => 8,
        "hiv-sti" => 9,
        "genetic" => 10,
        "reproductive" => 11,
        _ => return None,
    })
}

fn kind_code(s: &str) -> Option<u8> {
    Some(match s {
        "Patient" => 1,
        "Observation" => 2,
        "Condition" => 3,
        "MedicationRequest" => 4,
        "AllergyIntolerance" => 5,
        "Encounter" => 6,
        "DiagnosticReport" => 7,
        "ImagingStudy" => 8,
        "Procedure" => 9,
        "Immunization" => 10,
        "ClinicalNote" => 11,
        "PsychotherapyNote" => 12,
        "DocumentReference" => 13,
        "Coverage" => 14,
        "Claim" => 15,
        "Consent" => 16,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Label;
    use crate::model::document::BUILTIN_KINDS;

    #[test]
    fn tables_fit_one_byte_codes_and_have_no_duplicates() {
        for t in [FIELD_NAMES, LABELS, KINDS] {
            assert!(!t.is_empty() && t.len() <= 127);
            let set: std::collections::HashSet<_> = t.iter().collect();
            assert_eq!(set.len(), t.len());
        }
        assert_eq!(FIELDS.code("code"), Some(1));
        assert_eq!(FIELDS.entry(1), Some("code"));
        assert_eq!(FIELDS.entry(0), None);
        assert_eq!(FIELDS.entry(FIELD_NAMES.len() as u64 + 1), None);
        assert_eq!(FIELDS.code("phone"), None);
    }

    #[test]
    fn match_arms_agree_with_the_lists() {
        for t in [&FIELDS, &LABEL_TABLE, &KIND_TABLE] {
            for (i, e) in t.entries.iter().enumerate() {
                assert_eq!(t.code(e), Some(i as u8 + 1), "{e}");
                assert_eq!(t.entry(i as u64 + 1), Some(*e));
            }
        }
    }

    /// Every built-in label and kind has a code, so a new built-in one must be appended
    /// to its table (codes never move).
    #[test]
    fn every_builtin_label_and_kind_has_a_code() {
        for l in Label::builtin() {
            assert!(LABEL_TABLE.code(l.as_str()).is_some(), "{l}");
        }
        for k in BUILTIN_KINDS {
            assert!(KIND_TABLE.code(k).is_some(), "{k}");
        }
        // The first entries never move: they are in files already written.
        assert_eq!(
            (LABEL_TABLE.code("normal"), KIND_TABLE.code("Observation"), FIELDS.code("value")),
            (Some(1), Some(2), Some(13))
        );
    }
}
