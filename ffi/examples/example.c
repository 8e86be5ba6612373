/* The README's C example: create a vault with a raw key, store a lab result as a
 * physician, read it back as a billing clerk, query, and verify the audit trail. */
#include <stdio.h>
#include <string.h>

#include "chartvault.h"

static int fail(const char *what) {
    char msg[512];
    size_t len = 0;
    cv_last_error_message(msg, sizeof msg, &len);
    fprintf(stderr, "%s failed: %s\n", what, msg);
    return 1;
}

int main(int argc, char **argv) {
    char path[512];
    snprintf(path, sizeof path, "%s/example.cv", argc > 1 ? argv[1] : ".");
    uint8_t key[32] = {0}; /* in an app: a 32-byte key from Keychain or Android Keystore */
    for (int i = 0; i < 32; i++) key[i] = (uint8_t)(i + 1);

    cv_vault vault;
    if (cv_vault_create_with_key(path, key, &vault) != CV_OK) return fail("create");

    cv_session dr, billing, auditor;
    if (cv_session_open(vault,
                        "{\"user\":\"dr.grey\",\"roles\":[\"physician\"],\"organization\":\"general\","
                        "\"purpose\":\"TREAT\",\"care_team\":[\"MRN-7\"]}",
                        &dr) != CV_OK)
        return fail("session");
    if (cv_session_open(vault,
                        "{\"user\":\"bob\",\"roles\":[\"billing\"],\"organization\":\"general\",\"purpose\":\"HPAYMT\"}",
                        &billing) != CV_OK)
        return fail("session");
    if (cv_session_open(vault,
                        "{\"user\":\"pat\",\"roles\":[\"privacy-officer\"],\"organization\":\"general\",\"purpose\":\"HCOMPL\"}",
                        &auditor) != CV_OK)
        return fail("session");

    char *id = NULL;
    if (cv_put(dr,
               "{\"patient\":\"MRN-7\",\"kind\":\"Observation\",\"fields\":{"
               "\"code\":{\"code\":{\"system\":\"loinc\",\"code\":\"4548-4\",\"display\":\"Hemoglobin A1c\"}},"
               "\"value\":6.8,\"effective\":{\"date\":\"2024-03-01\"},"
               "\"note\":\"discussed diet\"}}",
               &id) != CV_OK)
        return fail("put");

    char *json = NULL;
    if (cv_get(billing, id, 0, &json) != CV_OK) return fail("get");
    printf("billing sees: %s\n", json); /* "note" is listed under "redacted" */
    cv_string_free(json);

    if (cv_query(dr, "kind = Observation and code = loinc:4548-4 and effective >= 2024-01-01", NULL, 20, &json) != CV_OK)
        return fail("query");
    printf("query: %.60s...\n", json);
    cv_string_free(json);

    if (cv_audit_verify(auditor, &json) != CV_OK) return fail("audit verify");
    printf("audit: %s\n", json);
    int intact = strstr(json, "\"intact\":true") != NULL;
    cv_string_free(json);

    cv_string_free(id);
    cv_session_close(dr);
    cv_session_close(billing);
    cv_session_close(auditor);
    cv_vault_close(vault);
    return intact ? 0 : 1;
}
