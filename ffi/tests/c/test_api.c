/*
 * Calls every function of the chartvault C API, including every error path the API
 * promises to detect. Run under valgrind by tests/c_api.rs: zero errors, zero leaks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chartvault.h"

static int failures = 0;

#define CHECK(cond, what)                                                    \
    do {                                                                     \
        if (!(cond)) {                                                       \
            char msg_[512];                                                  \
            size_t n_ = 0;                                                   \
            cv_last_error_message(msg_, sizeof msg_, &n_);                   \
            fprintf(stderr, "FAIL %s:%d %s (last error %d: %s)\n", __FILE__, \
                    __LINE__, what, (int)cv_last_error_code(), msg_);        \
            failures++;                                                      \
        }                                                                    \
    } while (0)

#define EXPECT(call, status) CHECK((call) == (status), #call " == " #status)

static const char *PHYSICIAN =
    "{\"user\":\"dr.grey\",\"roles\":[\"physician\"],\"organization\":\"general\","
    "\"purpose\":\"TREAT\",\"care_team\":[\"MRN-1\",\"MRN-2\"]}";
static const char *BILLING =
    "{\"user\":\"bob\",\"roles\":[\"billing\"],\"organization\":\"general\",\"purpose\":\"HPAYMT\"}";
static const char *ADMIN =
    "{\"user\":\"sec\",\"roles\":[\"security-admin\"],\"organization\":\"general\",\"purpose\":\"HSYSADMIN\"}";
static const char *AUDITOR =
    "{\"user\":\"po\",\"roles\":[\"privacy-officer\"],\"organization\":\"general\",\"purpose\":\"HCOMPL\"}";
static const char *ER_DOC =
    "{\"user\":\"dr.er\",\"roles\":[\"physician\"],\"organization\":\"general\",\"purpose\":\"TREAT\"}";

static const char *NOTE =
    "{\"patient\":\"MRN-1\",\"kind\":\"ClinicalNote\",\"fields\":{"
    "\"date\":{\"date\":\"2024-03-01\"},\"text\":\"feels better today\"}}";
static const char *OBS =
    "{\"patient\":\"MRN-1\",\"kind\":\"Observation\",\"fields\":{"
    "\"code\":{\"code\":{\"system\":\"loinc\",\"code\":\"4548-4\"}},\"value\":6.8,"
    "\"effective\":{\"date\":\"2024-03-01\"},"
    "\"scan\":{\"attachment\":{\"content_type\":\"text/plain\",\"base64\":\"aGVsbG8=\"}}}}";

int main(int argc, char **argv) {
    char path[512];
    snprintf(path, sizeof path, "%s/c-test.cv", argc > 1 ? argv[1] : "/tmp");
    uint8_t key[32];
    for (int i = 0; i < 32; i++) key[i] = (uint8_t)(i * 7 + 1);
    uint8_t wrong[32] = {0};

    /* Versions. */
    CHECK(cv_abi_version() == CV_ABI_VERSION, "abi version");
    CHECK(strlen(cv_version()) > 0, "version string");

    /* Create: NULL arguments, then a real vault. */
    cv_vault v = 0;
    EXPECT(cv_vault_create_with_key(NULL, key, &v), CV_ERR_NULL);
    EXPECT(cv_vault_create_with_key(path, NULL, &v), CV_ERR_NULL);
    EXPECT(cv_vault_create_with_key(path, key, NULL), CV_ERR_NULL);
    CHECK(v == 0, "no output written on failure");
    EXPECT(cv_vault_create_with_key(path, key, &v), CV_OK);
    CHECK(v != 0, "vault handle");
    cv_vault v2 = 0;
    EXPECT(cv_vault_create_with_key(path, key, &v2), CV_ERR_NOT_A_VAULT); /* already exists */
    EXPECT(cv_vault_open_with_key(path, key, 0, &v2), CV_ERR_LOCKED);     /* one writer */
    EXPECT(cv_vault_create(path, (const uint8_t *)"pw", 2, 99, &v2), CV_ERR_INVALID_ARGUMENT);

    /* Last error message: buffer too small, then enough. */
    size_t need = 0;
    char tiny[4];
    EXPECT(cv_last_error_message(tiny, sizeof tiny, &need), CV_ERR_BUFFER_TOO_SMALL);
    CHECK(need > 4, "needed length reported");
    char *big = malloc(need + 1);
    EXPECT(cv_last_error_message(big, need + 1, &need), CV_OK);
    CHECK(strstr(big, "KDF") != NULL, "message names the problem");
    free(big);
    EXPECT(cv_last_error_message(NULL, 0, &need), CV_ERR_NULL);

    /* Sessions: bad JSON, invalid UTF-8, bad handle. */
    cv_session dr = 0, bill = 0, admin = 0, po = 0, er = 0;
    EXPECT(cv_session_open(v, "{not json", &dr), CV_ERR_JSON);
    EXPECT(cv_session_open(v, "\xff\xfe", &dr), CV_ERR_UTF8);
    EXPECT(cv_session_open(v, NULL, &dr), CV_ERR_NULL);
    EXPECT(cv_session_open(12345, PHYSICIAN, &dr), CV_ERR_INVALID_HANDLE);
    EXPECT(cv_session_open(v, PHYSICIAN, &dr), CV_OK);
    EXPECT(cv_session_open(v, BILLING, &bill), CV_OK);
    EXPECT(cv_session_open(v, ADMIN, &admin), CV_OK);
    EXPECT(cv_session_open(v, AUDITOR, &po), CV_OK);
    EXPECT(cv_session_open(v, ER_DOC, &er), CV_OK);

    /* Put / get / update / history. */
    char *note_id = NULL, *obs_id = NULL, *json = NULL;
    EXPECT(cv_put(dr, "{\"patient\":\"MRN-1\"}", &note_id), CV_ERR_JSON);
    EXPECT(cv_put(dr, "[1,2", &note_id), CV_ERR_JSON);
    EXPECT(cv_put(dr, NOTE, NULL), CV_ERR_NULL);
    CHECK(note_id == NULL, "no id on failure");
    EXPECT(cv_put(dr, NOTE, &note_id), CV_OK);
    EXPECT(cv_put(dr, OBS, &obs_id), CV_OK);
    EXPECT(cv_put(bill, NOTE, &json), CV_ERR_DENIED);
    EXPECT(cv_get(dr, note_id, 0, &json), CV_OK);
    CHECK(json && strstr(json, "feels better") != NULL, "physician sees note text");
    EXPECT(cv_string_free(json), CV_OK);
    EXPECT(cv_get(bill, note_id, 0, &json), CV_OK); /* billing: note text is redacted */
    CHECK(strstr(json, "feels better") == NULL && strstr(json, "\"redacted\"") != NULL, "billing sees a redaction marker");
    EXPECT(cv_string_free(json), CV_OK);
    EXPECT(cv_get(bill, obs_id, 0, &json), CV_OK);
    CHECK(json && strstr(json, "4548-4") != NULL, "billing sees codes");
    EXPECT(cv_string_free(json), CV_OK);
    EXPECT(cv_get(dr, "not-an-id", 0, &json), CV_ERR_INVALID_ARGUMENT);
    EXPECT(cv_get(dr, "00000000000000000000000000000000", 0, &json), CV_ERR_NOT_FOUND);
    EXPECT(cv_get(dr, note_id, 7, &json), CV_ERR_NOT_FOUND);
    uint32_t ver = 0;
    EXPECT(cv_update(dr, note_id,
                     "{\"patient\":\"MRN-1\",\"kind\":\"ClinicalNote\",\"fields\":{\"text\":\"amended\"}}",
                     &ver),
           CV_OK);
    CHECK(ver == 2, "version 2");
    EXPECT(cv_update(dr, note_id, "{\"patient\":\"MRN-2\",\"kind\":\"ClinicalNote\",\"fields\":{}}", &ver),
           CV_ERR_INVALID_ARGUMENT);
    EXPECT(cv_get(dr, note_id, 1, &json), CV_OK);
    CHECK(strstr(json, "feels better") != NULL, "old version kept");
    EXPECT(cv_string_free(json), CV_OK);
    EXPECT(cv_history(dr, note_id, &json), CV_OK);
    CHECK(json[0] == '[' && strstr(json, "amended") != NULL, "history");
    EXPECT(cv_string_free(json), CV_OK);

    /* Query with paging. */
    EXPECT(cv_query(dr, "patient = \"MRN-1\"", NULL, 1, &json), CV_OK);
    CHECK(strstr(json, "\"total\":2") != NULL, "query total");
    char *cur = strstr(json, "\"next_cursor\":\"");
    CHECK(cur != NULL, "cursor present");
    if (cur) {
        cur += strlen("\"next_cursor\":\"");
        char *end = strchr(cur, '"');
        char cursor[2048] = {0};
        if (end && (size_t)(end - cur) < sizeof cursor) memcpy(cursor, cur, (size_t)(end - cur));
        char *page2 = NULL;
        EXPECT(cv_query(dr, "patient = \"MRN-1\"", cursor, 1, &page2), CV_OK);
        CHECK(page2 && strstr(page2, "\"next_cursor\":null") != NULL, "last page");
        EXPECT(cv_string_free(page2), CV_OK);
        EXPECT(cv_query(dr, "kind = Observation", cursor, 1, &page2), CV_ERR_QUERY);
    }
    EXPECT(cv_string_free(json), CV_OK);
    EXPECT(cv_query(dr, "kind = ", NULL, 0, &json), CV_ERR_QUERY);
    EXPECT(cv_query(bill, "kind = ClinicalNote and text = \"x\"", NULL, 0, &json), CV_ERR_DENIED);

    /* Break-glass: an ER physician without a care relationship. */
    EXPECT(cv_get(er, obs_id, 0, &json), CV_ERR_DENIED);
    EXPECT(cv_break_glass(er, "MRN-1", ""), CV_ERR_INVALID_ARGUMENT);
    EXPECT(cv_break_glass(er, "MRN-1", "unconscious in the ER"), CV_OK);
    EXPECT(cv_get(er, obs_id, 0, &json), CV_OK);
    EXPECT(cv_string_free(json), CV_OK);

    /* Bulk import: one commit, all or nothing. */
    static const char *OBS2 =
        "{\"patient\":\"MRN-2\",\"kind\":\"Observation\",\"fields\":{"
        "\"code\":{\"code\":{\"system\":\"loinc\",\"code\":\"718-7\"}},\"value\":13.9}}";
    char many[1024], bad_many[1024];
    snprintf(many, sizeof many, "[%s,%s,%s]", OBS2, OBS2, OBS2);
    snprintf(bad_many, sizeof bad_many, "[%s,{\"patient\":\"MRN-2\"}]", OBS2);
    char *ids = NULL;
    EXPECT(cv_put_many(dr, many, NULL), CV_ERR_NULL);
    EXPECT(cv_put_many(dr, NULL, &ids), CV_ERR_NULL);
    EXPECT(cv_put_many(dr, "[1,", &ids), CV_ERR_JSON);
    EXPECT(cv_put_many(dr, "{}", &ids), CV_ERR_JSON);
    EXPECT(cv_put_many(dr, bad_many, &ids), CV_ERR_JSON);
    EXPECT(cv_put_many(bill, many, &ids), CV_ERR_DENIED);
    EXPECT(cv_put_many(12345, many, &ids), CV_ERR_INVALID_HANDLE);
    CHECK(ids == NULL, "no ids on failure");
    EXPECT(cv_query(dr, "patient = \"MRN-2\"", NULL, 0, &json), CV_OK);
    CHECK(strstr(json, "\"total\":0") != NULL, "a refused bulk import stores nothing");
    EXPECT(cv_string_free(json), CV_OK);
    EXPECT(cv_put_many(dr, many, &ids), CV_OK);
    int quotes = 0;
    for (const char *c = ids; c && *c; c++) quotes += *c == '"';
    CHECK(ids && ids[0] == '[' && quotes == 6, "three ids");
    EXPECT(cv_string_free(ids), CV_OK);
    EXPECT(cv_query(dr, "patient = \"MRN-2\"", NULL, 0, &json), CV_OK);
    CHECK(strstr(json, "\"total\":3") != NULL, "bulk import stored three documents");
    EXPECT(cv_string_free(json), CV_OK);
    EXPECT(cv_put_many(dr, "[]", &ids), CV_OK);
    CHECK(ids && strcmp(ids, "[]") == 0, "an empty import");
    EXPECT(cv_string_free(ids), CV_OK);

    /* Key slots (security admin only). */
    uint32_t slot = 0;
    EXPECT(cv_key_slot_add_passphrase(dr, (const uint8_t *)"pw", 2, CV_KDF_INSECURE_TESTING, &slot), CV_ERR_DENIED);
    EXPECT(cv_key_slot_add_passphrase(admin, (const uint8_t *)"second pass", 11, CV_KDF_INSECURE_TESTING, &slot), CV_OK);
    uint32_t slot2 = 0;
    EXPECT(cv_key_slot_add_key(admin, wrong, &slot2), CV_OK);
    EXPECT(cv_key_slot_remove(admin, slot2), CV_OK);
    EXPECT(cv_key_slot_remove(admin, 7), CV_ERR_INVALID_ARGUMENT);

    /* Audit and reports (privacy officer only). */
    EXPECT(cv_audit_verify(dr, &json), CV_ERR_DENIED);
    EXPECT(cv_audit_verify(po, &json), CV_OK);
    CHECK(strstr(json, "\"intact\":true") != NULL, "audit intact");
    EXPECT(cv_string_free(json), CV_OK);
    EXPECT(cv_accounting_of_disclosures(po, "MRN-1", &json), CV_OK);
    CHECK(strstr(json, "accountable") != NULL, "accounting report");
    EXPECT(cv_string_free(json), CV_OK);
    EXPECT(cv_vault_verify(v, &json), CV_OK);
    CHECK(strstr(json, "\"clean\":true") != NULL, "vault verifies");
    EXPECT(cv_string_free(json), CV_OK);
    uint64_t commit = 0;
    uint8_t hash[32];
    EXPECT(cv_vault_head(v, &commit, hash), CV_OK);
    CHECK(commit > 0, "head");
    EXPECT(cv_vault_head(v, NULL, hash), CV_ERR_NULL);

    /* Policy: bad JSON, then a short idle time to exercise expiry. */
    EXPECT(cv_policy_set(admin, "{\"name\":\"x\"", &ver), CV_ERR_INVALID_ARGUMENT);
    EXPECT(cv_policy_set(dr, "{}", &ver), CV_ERR_INVALID_ARGUMENT);

    /* Oversized input. */
    size_t huge_len = (size_t)CV_MAX_INPUT + 16;
    char *huge = malloc(huge_len + 1);
    memset(huge, 'a', huge_len);
    huge[huge_len] = 0;
    EXPECT(cv_put(dr, huge, &json), CV_ERR_TOO_LARGE);
    free(huge);

    /* Strings: double free and foreign pointers are refused. */
    EXPECT(cv_string_free(note_id), CV_OK);
    EXPECT(cv_string_free(note_id), CV_ERR_INVALID_ARGUMENT);
    char local[8] = "x";
    EXPECT(cv_string_free(local), CV_ERR_INVALID_ARGUMENT);
    EXPECT(cv_string_free(NULL), CV_OK);
    EXPECT(cv_string_free(obs_id), CV_OK);

    /* Closed handles are detected. */
    EXPECT(cv_session_close(bill), CV_OK);
    EXPECT(cv_session_close(bill), CV_ERR_INVALID_HANDLE);
    EXPECT(cv_get(bill, "00000000000000000000000000000000", 0, &json), CV_ERR_INVALID_HANDLE);

    /* Session expiry: policy with a 1 s idle limit. */
    const char *short_policy =
        "{\"name\":\"short\",\"session_idle_secs\":1,\"grants\":["
        "{\"roles\":[\"physician\"],\"purposes\":[\"TREAT\"],\"operations\":[\"read\",\"create\",\"query\"],"
        "\"labels\":[\"normal\",\"restricted\"],\"care_team\":true},"
        "{\"roles\":[\"security-admin\"],\"purposes\":[\"HSYSADMIN\"],\"operations\":[\"administer\"]}]}";
    EXPECT(cv_policy_set(admin, short_policy, &ver), CV_OK);
    sleep(2);
    EXPECT(cv_query(dr, "patient = \"MRN-1\"", NULL, 0, &json), CV_ERR_SESSION_EXPIRED);

    EXPECT(cv_session_close(dr), CV_OK);
    EXPECT(cv_session_close(admin), CV_OK);
    EXPECT(cv_session_close(po), CV_OK);
    EXPECT(cv_session_close(er), CV_OK);
    EXPECT(cv_vault_close(v), CV_OK);
    EXPECT(cv_vault_close(v), CV_ERR_INVALID_HANDLE);

    /* Reopen: wrong key, passphrase slot, read-only. */
    EXPECT(cv_vault_open_with_key(path, wrong, 0, &v), CV_ERR_WRONG_KEY);
    EXPECT(cv_vault_open(path, (const uint8_t *)"nope", 4, 0, &v), CV_ERR_WRONG_KEY);
    EXPECT(cv_vault_open(path, (const uint8_t *)"second pass", 11, 1, &v), CV_OK);
    EXPECT(cv_vault_verify(v, &json), CV_OK);
    EXPECT(cv_string_free(json), CV_OK);
    EXPECT(cv_vault_close(v), CV_OK);
    EXPECT(cv_vault_open_with_key("/nonexistent/dir/x.cv", key, 0, &v), CV_ERR_IO);

    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("C API: all checks passed\n");
    return 0;
}
