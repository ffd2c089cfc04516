/*
 * tool.h: the `kms` tool's command families (one file each), for the
 * table in tool.c and for the tests.
 */
#ifndef KMS_TOOL_H
#define KMS_TOOL_H

#include "clients/cli/cli.h"

#define TOOL_PROG "kms"
#define TOOL_ABOUT "Encrypt, decrypt, sign, verify, MAC and pseudonymize with kms keys; get data keys and random bytes."

/* What Encrypt (kms encrypt --mode direct) takes; --mode auto uses it up
 * to this size and envelope encryption past it. */
#define TOOL_ENCRYPT_MAX KMS_ENCRYPT_MAX_PLAINTEXT
/* A ciphertext blob is the plaintext plus a small header: this is ample. */
#define TOOL_BLOB_MAX (64 * 1024)

extern const struct cli_command tool_commands[];             /* tool.c */
int tool_encrypt(struct cli *cli, int argc, char **argv);    /* tool_crypt.c */
int tool_decrypt(struct cli *cli, int argc, char **argv);
int tool_re_encrypt(struct cli *cli, int argc, char **argv);
int tool_data_key(struct cli *cli, int argc, char **argv);   /* tool_random.c */
int tool_random(struct cli *cli, int argc, char **argv);
int tool_sign(struct cli *cli, int argc, char **argv);       /* tool_sign.c */
int tool_verify(struct cli *cli, int argc, char **argv);
int tool_public_key(struct cli *cli, int argc, char **argv);
int tool_mac(struct cli *cli, int argc, char **argv);
int tool_verify_mac(struct cli *cli, int argc, char **argv);
int tool_pseudonym(struct cli *cli, int argc, char **argv);

/* What to do about a key that is DISABLED or PENDING_DELETION (kmsd's
 * FAILED_PRECONDITION), to print after its message; NULL for any other
 * failure (tool_crypt.c). */
const char *tool_key_state_hint(const kms_error *err);

/* kms pseudonym --file: values per request are at most
 * KMS_PSEUDONYM_VALUES_MAX and at most this many bytes, so that a request
 * stays well inside kmsd's default request bound (8 MiB) whatever the
 * values' lengths. */
#define TOOL_PSEUDONYM_BATCH_BYTES ((size_t)4 << 20)

#endif
