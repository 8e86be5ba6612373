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

/// Defines a dictionary's entry list and its lookup from one list of literals. The
/// lookup compares in list order, as a `match` on string literals compiles to, so it
/// needs neither a hash table (which valgrind reports as "possibly lost" when it lives
/// in a static) nor an allocation, and the list is written once.
macro_rules! dictionary {
    ($(#[$doc:meta])* $list:ident, $lookup:ident: [$($entry:literal),* $(,)?]) => {
        $(#[$doc])*
        pub const $list: &[&str] = &[$($entry),*];

        fn $lookup(s: &str) -> Option<u8> {
            let mut code = 0u8;
            $(
                code += 1;
                if s == $entry {
                    return Some(code);
                }
            )*
            None
        }
    };
}

dictionary!(
    /// Field names with a one-byte code: entry `i` has code `i + 1`.
    FIELD_NAMES, field_code: [
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
]);

dictionary!(
    /// Labels with a one-byte code (the built-in labels, in their declaration order).
    LABELS, label_code: [
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
]);

dictionary!(
    /// Kinds with a one-byte code (the built-in kinds, in their declaration order).
    KINDS, kind_code: [
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
]);

/// One static dictionary: entries by code, and codes by entry.
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
    fn lookups_agree_with_the_lists() {
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
