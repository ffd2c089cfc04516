/*
 * cli_io.c: strict parsers (k=v pairs, numbers, base64) and reading and
 * writing the commands' inputs and outputs.
 */
#include "clients/cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

static bool is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

bool cli_b64_decode(const char *in, size_t len, uint8_t *out, size_t out_cap,
                    size_t *out_len)
{
	/* A file's last line ends with a newline, an editor's maybe with more. */
	while (len > 0 && is_space(in[len - 1]))
		len--;
	return kms_base64_decode(in, len, out, out_cap, out_len);
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
