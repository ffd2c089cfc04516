/*
 * tool.c: the `kms` tool's command table (dispatch and usage).
 */
#include "clients/cli/tool.h"

/* Every file a command writes: cli_write_output. */
#define OUT_HELP                                                                \
	"                        (a file, new or not, ends as a new file of mode\n"  \
	"                        0600, written whole or not at all)\n"

#define CONTEXT_HELP                                                            \
	"  --context k=v         encryption context pair; repeat for more. Decrypt\n" \
	"                        needs exactly the pairs used to encrypt\n"

const struct cli_command tool_commands[] = {
	{ .name = "encrypt", .run = tool_encrypt,
	  .args = "--key KEY [--context k=v]... [-i|--in FILE|-] [-o|--out FILE|-] "
	          "[--mode auto|direct|envelope] [--raw] [--quiet]",
	  .help = "Encrypt a file or stdin of any size under a key",
	  .details = "  --key KEY             key id or alias/NAME\n" CONTEXT_HELP
	             "  -i, --in FILE         plaintext to encrypt (default: stdin)\n"
	             "  -o, --out FILE        where the ciphertext goes (default: stdout)\n"
	             OUT_HELP
	             "  --mode MODE           how (default auto: direct for 1.." CLI_STR(TOOL_ENCRYPT_MAX) " bytes,\n"
	             "                        envelope for more, or for none):\n"
	             "                        direct: kmsd encrypts it (Encrypt), sealed inside\n"
	             "                        the HSM; a compact blob, base64 (--raw: raw\n"
	             "                        bytes) that kmsd can move to another key or\n"
	             "                        context (kms re-encrypt); at most " CLI_STR(TOOL_ENCRYPT_MAX) " bytes\n"
	             "                        envelope: any size; encrypted here at memory\n"
	             "                        speed under a new data key from kmsd\n"
	             "                        (GenerateDataKey, which the grant must allow);\n"
	             "                        only that key, wrapped, ever goes back to kmsd.\n"
	             "                        The output is a binary envelope message: never\n"
	             "                        written to a terminal (give -o FILE)\n"
	             "  --raw                 direct: write the blob as raw bytes, not base64\n"
	             "  --quiet               no progress line (else one on a terminal's\n"
	             "                        stderr while a file is encrypted)\n"
	             "\n  With --json: direct, the blob as JSON; envelope, -o FILE is needed\n"
	             "  and a summary (key, version, sizes) is printed.\n" },
	{ .name = "decrypt", .run = tool_decrypt,
	  .args = "[--context k=v]... [-i|--in FILE|-] [-o|--out FILE|-] [--raw-in] [--key KEY] "
	          "[--any-context] [--quiet]",
	  .help = "Decrypt a blob or an envelope message (told apart by its first bytes)",
	  .details = CONTEXT_HELP
	             "                        (for an envelope message too: exactly its\n"
	             "                        context, none for none; checked before kmsd is\n"
	             "                        asked, so a message moved from another tenant's\n"
	             "                        or purpose's path is refused)\n"
	             "  --any-context         an envelope message under whatever context its\n"
	             "                        header holds (kmsd still authorizes it)\n"
	             "  -i, --in FILE         the blob or envelope message (default: stdin)\n"
	             "  -o, --out FILE        where the plaintext goes (default: stdout)\n"
	             OUT_HELP
	             "                        A message that does not decrypt leaves no file\n"
	             "                        and FILE as it was. To stdout, an envelope\n"
	             "                        message's plaintext streams as each segment\n"
	             "                        verifies: if a later one fails, stderr says how\n"
	             "                        many bytes already written must be discarded\n"
	             "  --raw-in              the blob is raw bytes, not base64 (base64 may\n"
	             "                        be wrapped: spaces and line ends are ignored)\n"
	             "  --key KEY             refuse a blob or message under any other key\n"
	             "  --quiet               no progress line (else one on a terminal's\n"
	             "                        stderr while a file is decrypted)\n"
	             "\n  With --json: a blob's plaintext as JSON; an envelope message needs\n"
	             "  -o FILE, and a summary (key, version, size) is printed.\n" },
	{ .name = "re-encrypt", .run = tool_re_encrypt,
	  .args = "[--key DEST] [--context k=v]... [--dest-context k=v]... [-i|--in FILE] "
	          "[-o|--out FILE] [--raw-in] [--raw]",
	  .help = "Re-seal a blob under another key or context, inside kmsd",
	  .details = "  --key DEST            destination key (default: the blob's key,\n"
	             "                        its current primary version)\n"
	             "  --context k=v         the blob's encryption context\n"
	             "  --dest-context k=v    the new blob's encryption context\n"
	             "  -i, -o, --raw-in, --raw   as for encrypt and decrypt (a blob only:\n"
	             "                        an envelope message is decrypted and\n"
	             "                        encrypted again)\n" },
	{ .name = "data-key", .run = tool_data_key,
	  .args = "--key KEY [--context k=v]... [--no-plaintext] [--out FILE]",
	  .help = "Make an AES-256 data key: print it and its blob, base64, one a line",
	  .details = "  --key KEY             key to seal the data key under\n" CONTEXT_HELP
	             "  --no-plaintext        print only the blob\n"
	             "  --out FILE            write there instead of stdout\n" OUT_HELP },
	{ .name = "sign", .run = tool_sign,
	  .args = "--key KEY [--digest] [-i|--in FILE|-] [-o|--out FILE|-] [--base64]",
	  .help = "Sign a message (1.." CLI_STR(KMS_SIGN_MESSAGE_MAX) " bytes) or its SHA-256 digest "
	          "with a signing key",
	  .details = "  --key KEY             an ED25519 or ECC_P256 key (id or alias/NAME);\n"
	             "                        its primary version signs\n"
	             "  -i, --in FILE         the message (default: stdin), 1.."
	             CLI_STR(KMS_SIGN_MESSAGE_MAX) " bytes.\n"
	             "                        A longer one: sign its digest (--digest)\n"
	             "  --digest              the input is the message's SHA-256 digest, "
	             CLI_STR(KMS_SIGN_DIGEST_LEN) "\n"
	             "                        bytes (openssl dgst -sha256 -binary FILE):\n"
	             "                        ECC_P256 keys only (Ed25519 signs messages)\n"
	             "  -o, --out FILE        where the signature goes (default: stdout)\n"
	             OUT_HELP
	             "  --base64              write it as base64 and a line end, not raw\n"
	             "                        bytes (raw bytes never go to a terminal)\n"
	             "\n  The signature: ED25519, 64 bytes (R || S, RFC 8032), as openssl\n"
	             "  pkeyutl -verify -rawin checks it; ECC_P256, ECDSA over SHA-256, DER, as\n"
	             "  openssl dgst -sha256 -verify does. kms public-key gives the key.\n"
	             "  With --json: the signature (base64), key, version and algorithm.\n" },
	{ .name = "verify", .run = tool_verify,
	  .args = "--key KEY (--signature FILE|--signature-base64 B64) [--digest] "
	          "[-i|--in FILE|-] [--version N]",
	  .help = "Check a signature over a message with kmsd (exit 0 valid, 4 not)",
	  .details = "  --key KEY             the key that signed (id or alias/NAME)\n"
	             "  --signature FILE      the signature, raw bytes as kms sign writes them\n"
	             "  --signature-base64 B64\n"
	             "                        or the signature in base64 (kms sign --base64)\n"
	             "  -i, --in FILE         the message (default: stdin)\n"
	             "  --digest              the input is its SHA-256 digest (as signed)\n"
	             "  --version N           only version N of the key (default: each of\n"
	             "                        its versions that can still verify)\n"
	             "\n  Exit status 0: the signature verifies (\"signature valid: key K\n"
	             "  version N\"); 4: kmsd checked it and it does not (one line on stderr;\n"
	             "  with --json, status INVALID) - not an error; 1, 2, 3: an error, as\n"
	             "  below, and nothing was decided.\n" },
	{ .name = "public-key", .run = tool_public_key,
	  .args = "--key KEY [--version N] [--der] [-o|--out FILE|-]",
	  .help = "Print a signing key's public key, PEM (for openssl and others)",
	  .details = "  --key KEY             an ED25519 or ECC_P256 key (id or alias/NAME)\n"
	             "  --version N           that version's (default: the primary's)\n"
	             "  --der                 DER (SubjectPublicKeyInfo), not PEM: binary,\n"
	             "                        never written to a terminal\n"
	             "  -o, --out FILE        write there instead of stdout\n" OUT_HELP },
	{ .name = "mac", .run = tool_mac,
	  .args = "--key KEY [--version N] [-i|--in FILE|-] [-o|--out FILE|-] [--base64]",
	  .help = "Make an HMAC-SHA256 of a message (1.." CLI_STR(KMS_SIGN_MESSAGE_MAX)
	          " bytes) with an HMAC_SHA256 key",
	  .details = "  --key KEY             an HMAC_SHA256 key (id or alias/NAME)\n"
	             "  --version N           with that version (default: the primary);\n"
	             "                        keep the version to verify after a rotation\n"
	             "  -i, --in FILE         the message (default: stdin), 1.."
	             CLI_STR(KMS_SIGN_MESSAGE_MAX) " bytes\n"
	             "  -o, --out FILE        where the MAC (" CLI_STR(KMS_MAC_LEN)
	             " bytes) goes (default: stdout)\n" OUT_HELP
	             "  --base64              write it as base64 and a line end, not raw\n"
	             "                        bytes (raw bytes never go to a terminal)\n"
	             "\n  With --json: the MAC (base64), key and version.\n" },
	{ .name = "verify-mac", .run = tool_verify_mac,
	  .args = "--key KEY (--mac FILE|--mac-base64 B64) [-i|--in FILE|-] [--version N]",
	  .help = "Check an HMAC-SHA256 over a message with kmsd (exit 0 valid, 4 not)",
	  .details = "  --key KEY             the HMAC_SHA256 key (id or alias/NAME)\n"
	             "  --mac FILE            the MAC, " CLI_STR(KMS_MAC_LEN)
	             " raw bytes as kms mac writes them\n"
	             "  --mac-base64 B64      or in base64 (kms mac --base64)\n"
	             "  -i, --in FILE         the message (default: stdin)\n"
	             "  --version N           only version N (default: each of the key's\n"
	             "                        versions that can still verify)\n"
	             "\n  Exit status 0: the MAC verifies; 4: kmsd checked it and it does not\n"
	             "  (one line on stderr; with --json, status INVALID) - not an error;\n"
	             "  1, 2, 3: an error, as below, and nothing was decided.\n" },
	{ .name = "pseudonym", .run = tool_pseudonym,
	  .args = "--key KEY [--context k=v]... [--version N] (VALUE...|--file FILE) "
	          "[-o|--out FILE|-]",
	  .help = "Make stable pseudonyms (kp_...) of values with an HMAC_SHA256 key, one a line",
	  .details = "  --key KEY             an HMAC_SHA256 key (id or alias/NAME)\n"
	             "  --context k=v         a context pair, part of what is hashed: the\n"
	             "                        same value under another context gets another\n"
	             "                        pseudonym; repeat for more\n"
	             "  --version N           with that version (default: the primary's, and\n"
	             "                        one version for the whole run)\n"
	             "  VALUE...              the values, 1.." CLI_STR(KMS_PSEUDONYM_VALUE_MAX)
	             " bytes each. Other local users\n"
	             "                        can read a command line (ps) and the shell\n"
	             "                        keeps it: give real identifiers with --file\n"
	             "  --file FILE           or one value a line (LF line ends; '-': stdin),\n"
	             "                        any number of lines, sent in batches of at\n"
	             "                        most " CLI_STR(KMS_PSEUDONYM_VALUES_MAX)
	             " values, in order\n"
	             "  -o, --out FILE        write there instead of stdout\n" OUT_HELP
	             "\n  One pseudonym a line, in the values' order: the same key, version,\n"
	             "  context and value always give the same pseudonym. With --json: one\n"
	             "  object with the key, version and the list.\n" },
	{ .name = "random", .run = tool_random, .args = "N [--raw] [--out FILE]",
	  .help = "Print N (1.." CLI_STR(KMS_GENERATE_RANDOM_MAX) ") random bytes from the HSM, base64",
	  .details = "  --raw                 raw bytes, not base64\n"
	             "  --out FILE            write there instead of stdout\n" OUT_HELP },
	{ 0 },
};
