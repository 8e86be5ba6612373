//! The schema: which sensitivity label each field of each kind carries, and which
//! fields are indexed for queries.
//!
//! The labels a document's fields get are written into the document's (sealed)
//! envelope when it is stored, so changing the schema later never changes how an
//! existing version is protected.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Field, Kind, Label, LabelSet};

/// Per-field schema entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSchema {
    /// The field's label.
    pub label: Label,
}

/// Schema of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindSchema {
    /// Label of fields not listed in `fields`.
    pub default_label: Label,
    /// Fields with their own label.
    pub fields: BTreeMap<String, FieldSchema>,
}

/// The whole schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// Label for fields of kinds the schema does not list.
    pub fallback_label: Label,
    /// Per-kind schemas.
    pub kinds: BTreeMap<String, KindSchema>,
    /// Field names indexed in every kind (codes, dates, identifiers, status, values).
    pub indexed: BTreeSet<String>,
}

impl Default for Schema {
    fn default() -> Self {
        Schema::hospital_default()
    }
}

impl Schema {
    /// The default schema, aligned with HL7 confidentiality and sensitivity codes.
    ///
    /// | kind | default label | fields with their own label |
    /// |---|---|---|
    /// | Patient | demographics | |
    /// | Observation, Condition, MedicationRequest, AllergyIntolerance, Encounter, DiagnosticReport, ImagingStudy, Procedure, Immunization | normal | `note`, `text`, `conclusion`: restricted |
    /// | ClinicalNote, DocumentReference, Consent | restricted | `date`, `type`, `status`, `category`: normal |
    /// | PsychotherapyNote | psychotherapy | `date`: normal |
    /// | Coverage, Claim | financial | `code`, `date`, `status`: normal |
    /// | any other kind | normal | |
    ///
    /// Indexed everywhere: `code`, `category`, `status`, `effective`, `date`, `onset`,
    /// `issued`, `authored`, `performed`, `occurrence`, `identifier`, `birthDate`, `value`, `type`.
    pub fn hospital_default() -> Self {
        let mut kinds = BTreeMap::new();
        let mut add = |names: &[&str], default: Label, own: &[(&str, Label)]| {
            for n in names {
                kinds.insert(
                    (*n).to_string(),
                    KindSchema {
                        default_label: default.clone(),
                        fields: own.iter().map(|(f, l)| ((*f).to_string(), FieldSchema { label: l.clone() })).collect(),
                    },
                );
            }
        };
        add(&[Kind::PATIENT], Label::demographics(), &[]);
        add(
            &[
                Kind::OBSERVATION,
                Kind::CONDITION,
                Kind::MEDICATION_REQUEST,
                Kind::ALLERGY_INTOLERANCE,
                Kind::ENCOUNTER,
                Kind::DIAGNOSTIC_REPORT,
                Kind::IMAGING_STUDY,
                Kind::PROCEDURE,
                Kind::IMMUNIZATION,
            ],
            Label::normal(),
            &[("note", Label::restricted()), ("text", Label::restricted()), ("conclusion", Label::restricted())],
        );
        add(
            &[Kind::CLINICAL_NOTE, Kind::DOCUMENT_REFERENCE, Kind::CONSENT],
            Label::restricted(),
            &[
                ("date", Label::normal()),
                ("type", Label::normal()),
                ("status", Label::normal()),
                ("category", Label::normal()),
            ],
        );
        add(&[Kind::PSYCHOTHERAPY_NOTE], Label::psychotherapy(), &[("date", Label::normal())]);
        add(
            &[Kind::COVERAGE, Kind::CLAIM],
            Label::financial(),
            &[("code", Label::normal()), ("date", Label::normal()), ("status", Label::normal())],
        );
        let indexed = [
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
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        Schema { fallback_label: Label::normal(), kinds, indexed }
    }

    /// The label the schema gives field `field` of kind `kind`.
    pub fn label_of(&self, kind: &Kind, field: &str) -> Label {
        match self.kinds.get(kind.as_str()) {
            Some(k) => k.fields.get(field).map(|f| f.label.clone()).unwrap_or_else(|| k.default_label.clone()),
            None => self.fallback_label.clone(),
        }
    }

    /// The full label set of a field: the schema's label plus the document's extra labels.
    pub fn labels_of(&self, kind: &Kind, field: &str, extra: &[Label]) -> LabelSet {
        let mut s: LabelSet = extra.iter().cloned().collect();
        s.insert(self.label_of(kind, field));
        s
    }

    /// [`Schema::labels_of`] as a sorted list without duplicates (what label groups
    /// are keyed by), without building a set for the common case of no extra labels.
    pub fn field_labels(&self, kind: &Kind, field: &str, extra: &[Label]) -> Vec<Label> {
        self.labeler(kind).field_labels(field, extra)
    }

    /// The labels of the fields of one kind, with the kind looked up once (a document
    /// has many fields).
    pub fn labeler(&self, kind: &Kind) -> Labeler<'_> {
        Labeler { schema: self, kind: self.kinds.get(kind.as_str()) }
    }

    /// Whether `field` is indexed.    /// Whether `field` is indexed.
    pub fn is_indexed(&self, field: &str) -> bool {
        self.indexed.contains(field)
    }
}

/// [`Schema::field_labels`] for one kind: see [`Schema::labeler`].
#[derive(Debug, Clone, Copy)]
pub struct Labeler<'s> {
    schema: &'s Schema,
    kind: Option<&'s KindSchema>,
}

impl Labeler<'_> {
    /// The label the schema gives `field`.
    pub fn label_of(&self, field: &str) -> Label {
        match self.kind {
            Some(k) => k.fields.get(field).map(|f| f.label.clone()).unwrap_or_else(|| k.default_label.clone()),
            None => self.schema.fallback_label.clone(),
        }
    }

    /// The sorted, duplicate-free label list of `field` with the document's `extra` labels.
    pub fn field_labels(&self, field: &str, extra: &[Label]) -> Vec<Label> {
        let mut v = Vec::with_capacity(extra.len() + 1);
        self.field_labels_into(field, extra, &mut v);
        v
    }

    /// Every label of a document with `fields` (the union of their
    /// [`Labeler::field_labels`]), sorted and duplicate-free.
    pub fn document_labels<'f>(&self, fields: impl IntoIterator<Item = (&'f String, &'f Field)>) -> Vec<Label> {
        // A document has a few distinct labels: keep them unique as they come.
        let mut all: Vec<Label> = Vec::new();
        let mut add = |l: Label| {
            if !all.contains(&l) {
                all.push(l);
            }
        };
        for (name, f) in fields {
            f.labels.iter().cloned().for_each(&mut add);
            add(self.label_of(name));
        }
        all.sort_unstable();
        all
    }

    /// [`Labeler::field_labels`] written into `out` (cleared first), so a caller
    /// labelling many fields reuses one buffer instead of allocating a list per field.
    pub fn field_labels_into(&self, field: &str, extra: &[Label], out: &mut Vec<Label>) {
        out.clear();
        out.extend(extra.iter().cloned());
        out.push(self.label_of(field));
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let s = Schema::default();
        let note = Kind::new("ClinicalNote").unwrap();
        assert_eq!(s.label_of(&note, "text"), Label::restricted());
        assert_eq!(s.label_of(&note, "date"), Label::normal());
        let custom = Kind::new("Wearable").unwrap();
        assert_eq!(s.label_of(&custom, "steps"), Label::normal());
        let obs = Kind::new("Observation").unwrap();
        for extra in [vec![], vec![Label::hiv_sti()], vec![Label::normal(), Label::hiv_sti(), Label::hiv_sti()]] {
            let set: Vec<Label> = s.labels_of(&obs, "code", &extra).into_iter().collect();
            assert_eq!(s.field_labels(&obs, "code", &extra), set);
        }
        let set = s.labels_of(&Kind::new("Observation").unwrap(), "code", &[Label::hiv_sti()]);
        assert_eq!(set.len(), 2);
    }
}
