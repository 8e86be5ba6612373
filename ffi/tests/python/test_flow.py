"""A realistic flow through the C API from Python (ctypes): create a vault, put
documents for two patients, read as a physician and as a billing clerk (redaction
visible), query, break-glass, verify the audit trail, reopen.

Usage: python3 test_flow.py LIBCHARTVAULT_SO WORKDIR
"""
import ctypes
import json
import os
import sys

lib = ctypes.CDLL(sys.argv[1])
work = sys.argv[2]

c_char_pp = ctypes.POINTER(ctypes.c_char_p)
u64 = ctypes.c_uint64

for name, args in {
    "cv_vault_create_with_key": [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(u64)],
    "cv_vault_open_with_key": [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int32, ctypes.POINTER(u64)],
    "cv_vault_close": [u64],
    "cv_session_open": [u64, ctypes.c_char_p, ctypes.POINTER(u64)],
    "cv_session_close": [u64],
    "cv_put": [u64, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)],
    "cv_get": [u64, ctypes.c_char_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_void_p)],
    "cv_query": [u64, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_void_p)],
    "cv_break_glass": [u64, ctypes.c_char_p, ctypes.c_char_p],
    "cv_audit_verify": [u64, ctypes.POINTER(ctypes.c_void_p)],
    "cv_string_free": [ctypes.c_void_p],
    "cv_last_error_message": [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)],
}.items():
    getattr(lib, name).argtypes = args
    getattr(lib, name).restype = ctypes.c_int

CV_OK, CV_ERR_DENIED, CV_ERR_WRONG_KEY = 0, 10, 7


def last_error():
    buf = ctypes.create_string_buffer(1024)
    n = ctypes.c_size_t()
    lib.cv_last_error_message(buf, 1024, ctypes.byref(n))
    return buf.value.decode()


def check(status, what):
    if status != CV_OK:
        raise AssertionError(f"{what}: status {status}: {last_error()}")


def take_string(call, *args):
    out = ctypes.c_void_p()
    check(call(*args, ctypes.byref(out)), call.__name__)
    s = ctypes.string_at(out.value).decode()
    check(lib.cv_string_free(out), "cv_string_free")
    return s


def session(vault, principal):
    h = u64()
    check(lib.cv_session_open(vault, json.dumps(principal).encode(), ctypes.byref(h)), "session")
    return h.value


path = os.path.join(work, "py.cv").encode()
key = bytes(range(32))
vault = u64()
check(lib.cv_vault_create_with_key(path, key, ctypes.byref(vault)), "create")
v = vault.value

dr = session(v, {"user": "dr.grey", "roles": ["physician"], "organization": "general",
                 "purpose": "TREAT", "care_team": ["MRN-1", "MRN-2"]})
billing = session(v, {"user": "bob", "roles": ["billing"], "organization": "general", "purpose": "HPAYMT"})
er = session(v, {"user": "dr.er", "roles": ["physician"], "organization": "general", "purpose": "TREAT"})
auditor = session(v, {"user": "po", "roles": ["privacy-officer"], "organization": "general", "purpose": "HCOMPL"})

ids = {}
for patient, a1c in (("MRN-1", "6.8"), ("MRN-2", "7.9")):
    doc = {"patient": patient, "kind": "Observation", "fields": {
        "code": {"code": {"system": "loinc", "code": "4548-4", "display": "Hemoglobin A1c"}},
        "value": {"decimal": a1c}, "effective": {"date": "2024-03-01"},
        "note": "private remark about " + patient}}
    ids[patient] = take_string(lib.cv_put, dr, json.dumps(doc).encode())
    claim = {"patient": patient, "kind": "Claim", "fields": {"total": {"decimal": "120.00"}, "code": {"code": {"system": "cpt", "code": "83036"}}}}
    ids["claim-" + patient] = take_string(lib.cv_put, billing, json.dumps(claim).encode())

# Physician: everything.
doc = json.loads(take_string(lib.cv_get, dr, ids["MRN-1"].encode(), 0))
assert doc["fields"]["note"] == "private remark about MRN-1", doc
assert doc["fields"]["value"] == {"decimal": "6.8"}
# Billing clerk: the restricted note is redacted, codes and values visible.
doc = json.loads(take_string(lib.cv_get, billing, ids["MRN-1"].encode(), 0))
assert "note" not in doc["fields"], doc
assert doc["redacted"] == {"note": ["restricted"]}, doc
assert "private remark" not in json.dumps(doc)

# A claim: billing sees the amount, the physician sees only the (normal) code.
doc = json.loads(take_string(lib.cv_get, billing, ids["claim-MRN-1"].encode(), 0))
assert doc["fields"]["total"] == {"decimal": "120.00"}, doc
doc = json.loads(take_string(lib.cv_get, dr, ids["claim-MRN-1"].encode(), 0))
assert "total" not in doc["fields"] and doc["redacted"] == {"total": ["financial"]}, doc

# Query by code across patients.
res = json.loads(take_string(lib.cv_query, dr, b"kind = Observation and code = loinc:4548-4 order by value desc", None, 10))
assert res["total"] == 2, res
assert [d["patient"] for d in res["documents"]] == ["MRN-2", "MRN-1"], res

# Break-glass: an ER physician without a care relationship.
out = ctypes.c_void_p()
assert lib.cv_get(er, ids["MRN-2"].encode(), 0, ctypes.byref(out)) == CV_ERR_DENIED
assert "care relationship" in last_error()
check(lib.cv_break_glass(er, b"MRN-2", b"unresponsive on arrival"), "break-glass")
doc = json.loads(take_string(lib.cv_get, er, ids["MRN-2"].encode(), 0))
assert doc["fields"]["value"] == {"decimal": "7.9"}

# Audit trail verifies.
rep = json.loads(take_string(lib.cv_audit_verify, auditor))
assert rep["intact"] and rep["entries"] > 5, rep

for s in (dr, billing, er, auditor):
    check(lib.cv_session_close(s), "session close")
check(lib.cv_vault_close(v), "close")

# Reopen: wrong key refused, right key sees the data.
assert lib.cv_vault_open_with_key(path, bytes(32), 0, ctypes.byref(vault)) == CV_ERR_WRONG_KEY
check(lib.cv_vault_open_with_key(path, key, 0, ctypes.byref(vault)), "reopen")
dr = session(vault.value, {"user": "dr.grey", "roles": ["physician"], "organization": "general",
                           "purpose": "TREAT", "care_team": ["MRN-1", "MRN-2"]})
doc = json.loads(take_string(lib.cv_get, dr, ids["MRN-2"].encode(), 0))
assert doc["patient"] == "MRN-2"
check(lib.cv_session_close(dr), "session close")
check(lib.cv_vault_close(vault.value), "close")
print("python ctypes flow: ok")
