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
	{ .name = "random", .run = tool_random, .args = "N [--raw] [--out FILE]",
	  .help = "Print N (1.." CLI_STR(KMS_GENERATE_RANDOM_MAX) ") random bytes from the HSM, base64",
	  .details = "  --raw                 raw bytes, not base64\n"
	             "  --out FILE            write there instead of stdout\n" OUT_HELP },
	{ 0 },
};
