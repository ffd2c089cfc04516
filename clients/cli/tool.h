/*
 * tool.h: the `kms` tool's command families (one file each), for the
 * table in tool.c and for the tests.
 */
#ifndef KMS_TOOL_H
#define KMS_TOOL_H

#include "clients/cli/cli.h"

#define TOOL_PROG "kms"
#define TOOL_ABOUT "Encrypt and decrypt with kms keys; get data keys and random bytes."

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

#endif
