//! A hand-written operation sequence through the `ops_model` harness, so the model and
//! the engine are checked to agree on a scenario that touches every operation and role
//! (the fuzz target explores the rest).

use chartvault_fuzzcheck::targets::ops::{
    DocSpec, ExtraSel, FieldSel, FieldSpec, KindSel, Op, QuerySel, Reader, ValSel, Writer, run_ops,
};

fn field(name: FieldSel, value: ValSel, extra: ExtraSel) -> FieldSpec {
    FieldSpec { name, value, extra }
}

#[test]
fn every_operation_and_role_agrees_with_the_model() {
    let obs = DocSpec {
        patient: 0,
        kind: KindSel::Observation,
        fields: vec![
            field(FieldSel::Status, ValSel::Final, ExtraSel::None),
            field(FieldSel::Code, ValSel::Code(7), ExtraSel::None),
            field(FieldSel::Note, ValSel::Amended, ExtraSel::MentalHealth),
            field(FieldSel::Value, ValSel::Int(-3), ExtraSel::HivSti),
        ],
    };
    let sud = DocSpec {
        patient: 2,
        kind: KindSel::ClinicalNote,
        fields: vec![
            field(FieldSel::Date, ValSel::Flag(true), ExtraSel::None),
            field(FieldSel::Text, ValSel::Final, ExtraSel::SubstanceUse),
        ],
    };
    let psych = DocSpec {
        patient: 1,
        kind: KindSel::PsychotherapyNote,
        fields: vec![field(FieldSel::Text, ValSel::Final, ExtraSel::None)],
    };
    let claim = DocSpec {
        patient: 3,
        kind: KindSel::Claim,
        fields: vec![
            field(FieldSel::Code, ValSel::Code(1), ExtraSel::None),
            field(FieldSel::Amount, ValSel::Int(90), ExtraSel::None),
        ],
    };
    let all_readers = [
        Reader::Physician,
        Reader::PhysicianNoCareTeam,
        Reader::PhysicianPartial,
        Reader::Nurse,
        Reader::Billing,
        Reader::Researcher,
    ];
    let base = vec![
        Op::Put(Writer::Physician, obs.clone()),
        Op::Put(Writer::Physician, sud),
        Op::Put(Writer::Nurse, psych.clone()), // denied: nurses may not write psychotherapy notes
        Op::Put(Writer::Physician, psych),
        Op::Put(Writer::Physician, claim.clone()), // denied: financial label
        Op::Batch(Writer::Billing, vec![claim, obs.clone()]), // the observation is denied
        Op::Update(Writer::Physician, 0, vec![field(FieldSel::Status, ValSel::Amended, ExtraSel::None)]),
        Op::Update(Writer::Physician, 1, vec![]), // denied: Part 2 withholds the current version
        Op::Checkpoint,
        Op::Put(Writer::Nurse, obs),
        Op::CrashTruncate(12_345, 3),
    ];
    // One run per reader (a run applies at most 48 operations).
    for r in all_readers {
        let mut ops = base.clone();
        for d in 0..5 {
            ops.push(Op::Read(r, d));
            ops.push(Op::History(r, d));
        }
        for q in [QuerySel::All, QuerySel::Kind(KindSel::Observation), QuerySel::Patient(0), QuerySel::StatusFinal] {
            ops.push(Op::Query(r, q));
        }
        ops.push(Op::Reopen);
        ops.push(Op::Read(r, 0));
        assert!(ops.len() <= 48);
        let docs = run_ops(&ops);
        assert_eq!(docs, 5, "the model should hold the five permitted documents");
    }
}
