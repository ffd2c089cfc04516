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
	  .args = "--key KEY [--context k=v]... [--in FILE|-] [--out FILE|-] [--raw]",
	  .help = "Encrypt up to " CLI_STR(TOOL_ENCRYPT_MAX)
	          " bytes under a key; print the blob in base64",
	  .details = "  --key KEY             key id or alias/NAME\n" CONTEXT_HELP
	             "  --in FILE             plaintext to encrypt (default: stdin)\n"
	             "  --out FILE            where the blob goes (default: stdout)\n" OUT_HELP
	             "  --raw                 write the blob as raw bytes, not base64\n" },
	{ .name = "decrypt", .run = tool_decrypt,
	  .args = "[--context k=v]... [--in FILE|-] [--out FILE|-] [--raw-in] [--key KEY]",
	  .help = "Decrypt a blob (base64, or raw with --raw-in); write the plaintext",
	  .details = CONTEXT_HELP
	             "  --in FILE             the blob (default: stdin)\n"
	             "  --out FILE            where the plaintext goes (default: stdout)\n"
	             OUT_HELP
	             "  --raw-in              the blob is raw bytes, not base64 (base64 may\n"
	             "                        be wrapped: spaces and line ends are ignored)\n"
	             "  --key KEY             refuse a blob under any other key\n" },
	{ .name = "re-encrypt", .run = tool_re_encrypt,
	  .args = "[--key DEST] [--context k=v]... [--dest-context k=v]... [--in FILE] "
	          "[--out FILE] [--raw-in] [--raw]",
	  .help = "Re-seal a blob under another key or context, inside kmsd",
	  .details = "  --key DEST            destination key (default: the blob's key,\n"
	             "                        its current primary version)\n"
	             "  --context k=v         the blob's encryption context\n"
	             "  --dest-context k=v    the new blob's encryption context\n"
	             "  --in, --out, --raw-in, --raw   as for encrypt and decrypt\n" },
	{ .name = "data-key", .run = tool_data_key,
	  .args = "--key KEY [--context k=v]... [--no-plaintext] [--out FILE]",
	  .help = "Make an AES-256 data key: print it and its blob, base64, one a line",
	  .details = "  --key KEY             key to seal the data key under\n" CONTEXT_HELP
	             "  --no-plaintext        print only the blob\n"
	             "  --out FILE            write there instead of stdout\n" OUT_HELP },
	{ .name = "random", .run = tool_random, .args = "N [--raw] [--out FILE]",
	  .help = "Print N (1.." CLI_STR(KMS_GENERATE_RANDOM_MAX) ") random bytes from the HSM, base64",
	  .details = "  --raw                 raw bytes, not base64\n"
	             "  --out FILE            write there instead of stdout\n" OUT_HELP },
	{ 0 },
};
