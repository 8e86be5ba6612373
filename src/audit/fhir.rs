//! Export of audit entries as FHIR R4 AuditEvent resources.

use serde_json::{Value as J, json};

use super::{Action, AuditEntry, Outcome};
use crate::model::DateTime;

/// One entry as a FHIR R4 AuditEvent.
pub fn audit_event(e: &AuditEntry) -> J {
    let (action, subtype) = match e.action {
        Action::Create | Action::VaultCreate => ("C", "create"),
        Action::Read | Action::AttachmentRead | Action::AuditRead => ("R", "read"),
        Action::Update | Action::Amend | Action::PolicyChange | Action::ConsentChange | Action::KeySlotAdd => {
            ("U", "update")
        }
        Action::Erase | Action::KeySlotRemove => ("D", "delete"),
        Action::Query => ("E", "search"),
        _ => ("E", e.action.name()),
    };
    let outcome = match e.outcome {
        Outcome::Success => "0",
        Outcome::Denied => "4",
        Outcome::Failed => "8",
    };
    let mut entities: Vec<J> = Vec::new();
    if let Some(p) = &e.patient {
        entities.push(json!({
            "what": {"identifier": {"value": p}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"}
        }));
    }
    for d in &e.documents {
        entities.push(json!({
            "what": {"identifier": {"system": "urn:chartvault:document", "value": d.to_string()}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
            "securityLabel": e.labels.iter().map(|l| json!({
                "system": "urn:chartvault:label", "code": l.as_str(),
                "display": l.hl7_code().unwrap_or("")
            })).collect::<Vec<_>>()
        }));
    }
    let mut purpose =
        vec![json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": e.purpose}]})];
    if e.break_glass {
        purpose.push(json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG", "display": "break the glass"}]}));
    }
    json!({
        "resourceType": "AuditEvent",
        "id": format!("cv-audit-{}", e.index),
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110", "display": "Patient Record"},
        "subtype": [{"system": "urn:chartvault:action", "code": e.action.name(), "display": subtype}],
        "action": action,
        "recorded": DateTime::from_unix_micros(e.time_us).to_string(),
        "outcome": outcome,
        "outcomeDesc": e.detail,
        "purposeOfEvent": purpose,
        "agent": [{
            "who": {"identifier": {"value": e.user}},
            "requestor": true,
            "role": e.roles.iter().map(|r| json!({"text": r})).collect::<Vec<_>>(),
            "extension": [{"url": "urn:chartvault:organization", "valueString": e.organization}]
        }],
        "source": {"observer": {"display": "chartvault"}, "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]},
        "entity": entities,
        "extension": [{"url": "urn:chartvault:audit-chain", "valueString": crate::util::hex(&e.prev)}]
    })
}

/// A FHIR Bundle (collection) of AuditEvents.
pub fn bundle(entries: &[AuditEntry]) -> J {
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": entries.iter().map(|e| json!({"resource": audit_event(e)})).collect::<Vec<_>>()
    })
}
