/*
 * cli_io.c: strict parsers (k=v pairs, numbers, base64) and reading and
 * writing the commands' inputs and outputs.
 */
#include "clients/cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <kms/secmem.h>

/* ---- k=v pairs ---- */

const char *cli_pairs_add(struct cli_pairs *pairs, const char *arg)
{
	const char *eq = strchr(arg, '=');
	if (!eq)
		return "expected KEY=VALUE";
	if (eq == arg)
		return "the key is empty";
	size_t key_len = (size_t)(eq - arg);
	for (size_t i = 0; i < pairs->n; i++) {
		if (strlen(pairs->keys[i]) == key_len &&
		    memcmp(pairs->keys[i], arg, key_len) == 0)
			return "that key is given twice";
	}
	if (pairs->n >= CLI_MAX_PAIRS)
		return "too many pairs";
	char *key = strndup(arg, key_len);
	if (!key)
		return "out of memory";
	pairs->keys[pairs->n] = key;
	pairs->pairs[pairs->n].key = key;
	pairs->pairs[pairs->n].value = eq + 1;
	pairs->n++;
	return NULL;
}

void cli_pairs_free(struct cli_pairs *pairs)
{
	for (size_t i = 0; i < pairs->n; i++)
		free(pairs->keys[i]);
	memset(pairs, 0, sizeof *pairs);
}

/* ---- numbers ---- */

bool cli_parse_u32(const char *text, uint32_t min, uint32_t max, uint32_t *out)
{
	uint64_t value = 0;
	size_t i = 0;
	if (!text || !text[0])
		return false;
	for (; text[i]; i++) {
		if (text[i] < '0' || text[i] > '9' || i >= 10)
			return false;
		value = value * 10 + (uint64_t)(text[i] - '0');
	}
	if (value < min || value > max)
		return false;
	*out = (uint32_t)value;
	return true;
}

/* ---- base64 ---- */

size_t cli_b64_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

bool cli_b64_encode(const uint8_t *in, size_t n, char *out, size_t out_cap)
{
	if (n > (size_t)INT_MAX / 4 * 3 || out_cap < cli_b64_len(n) + 1)
		return false;
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return true;
}

char *cli_b64_secure(const uint8_t *in, size_t n)
{
	size_t cap = cli_b64_len(n) + 2; /* the newline and the NUL */
	char *text = kms_secure_alloc(cap);
	if (text && !cli_b64_encode(in, n, text, cap)) {
		kms_secure_free(text);
		text = NULL;
	}
	return text;
}

static int b64_value(char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

static bool is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

bool cli_b64_decode(const char *in, size_t len, uint8_t *out, size_t out_cap,
                    size_t *out_len)
{
	*out_len = 0;
	while (len > 0 && is_space(in[len - 1]))
		len--;
	if (len == 0 || len % 4 != 0 || len > (size_t)INT_MAX)
		return false;
	size_t pad = in[len - 1] != '=' ? 0 : in[len - 2] != '=' ? 1 : 2;
	/* Everything before the padding is from the alphabet: no '=' inside,
	 * no whitespace or newline inside, no other characters. */
	for (size_t i = 0; i < len - pad; i++)
		if (b64_value(in[i]) < 0)
			return false;
	/* One encoding per byte string: the bits padding leaves unused are 0. */
	if ((pad == 2 && (b64_value(in[len - 3]) & 0x0f)) ||
	    (pad == 1 && (b64_value(in[len - 2]) & 0x03)))
		return false;
	size_t raw = len / 4 * 3;
	if (out_cap < raw)
		return false;
	int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
	if (n < 0 || (size_t)n != raw) {
		kms_wipe(out, raw);
		return false;
	}
	*out_len = raw - pad;
	return true;
}

/* ---- input and output ---- */

static bool is_stdio(const char *path)
{
	return !path || strcmp(path, "-") == 0;
}

int cli_read_input(struct cli *cli, const char *path, uint8_t *buf, size_t cap,
                   size_t *len, size_t *total)
{
	uint8_t excess[4096]; /* counts a pipe's bytes past cap; never kept */
	const char *name = is_stdio(path) ? "standard input" : path;
	int fd = STDIN_FILENO;
	struct stat st;
	int code = CLI_EXIT_OK;
	bool excess_used = false;

	*len = 0;
	*total = 0;
	if (!is_stdio(path) && (fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		fprintf(cli->err, "%s: cannot read %s: %s\n", cli->prog, name, strerror(errno));
		return CLI_EXIT_USAGE;
	}
	bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	for (;;) {
		uint8_t *into = buf + *len;
		size_t room = cap - *len;
		if (room == 0) {
			if (regular) {
				/* The size says it without reading it all. */
				if ((uint64_t)st.st_size > *total)
					*total = (size_t)st.st_size;
				break;
			}
			into = excess;
			room = sizeof excess;
			excess_used = true;
		}
		ssize_t n = read(fd, into, room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(cli->err, "%s: cannot read %s: %s\n", cli->prog, name,
			        strerror(errno));
			code = CLI_EXIT_USAGE;
			break;
		}
		if (n == 0)
			break;
		if (into != excess)
			*len += (size_t)n;
		*total += (size_t)n;
	}
	if (excess_used)
		kms_wipe(excess, sizeof excess);
	if (fd != STDIN_FILENO)
		close(fd);
	if (code != CLI_EXIT_OK) {
		kms_wipe(buf, *len);
		*len = 0;
	}
	return code;
}

int cli_write_output(struct cli *cli, const char *path, const void *bytes, size_t len)
{
	if (is_stdio(path)) {
		if ((len && fwrite(bytes, 1, len, cli->out) != len) || fflush(cli->out) != 0) {
			fprintf(cli->err, "%s: cannot write the output: %s\n", cli->prog,
			        strerror(errno));
			return CLI_EXIT_USAGE;
		}
		return CLI_EXIT_OK;
	}
	/* 0600: the output may be a plaintext or a data key. */
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0) {
		fprintf(cli->err, "%s: cannot write %s: %s\n", cli->prog, path, strerror(errno));
		return CLI_EXIT_USAGE;
	}
	const uint8_t *next = bytes;
	size_t left = len;
	while (left > 0) {
		ssize_t n = write(fd, next, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(cli->err, "%s: cannot write %s: %s\n", cli->prog, path,
			        strerror(errno));
			close(fd);
			return CLI_EXIT_USAGE;
		}
		next += n;
		left -= (size_t)n;
	}
	if (close(fd) != 0) {
		fprintf(cli->err, "%s: cannot write %s: %s\n", cli->prog, path, strerror(errno));
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
}
