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
	/* base64(1) wraps at 76 columns, PEM at 64, a mail at CRLF; a file's
	 * last line ends with a newline. Whitespace is dropped wherever it is;
	 * what is left is decoded strictly, so each blob still has one text. */
	*out_len = 0;
	char *packed = malloc(len ? len : 1);
	if (!packed)
		return false;
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		if (!is_space(in[i]))
			packed[n++] = in[i];
	bool ok = kms_base64_decode(packed, n, out, out_cap, out_len);
	kms_wipe(packed, n);
	free(packed);
	return ok;
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

static int write_all(int fd, const void *bytes, size_t len)
{
	const uint8_t *next = bytes;
	while (len > 0) {
		ssize_t n = write(fd, next, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? errno : EIO;
		next += n;
		len -= (size_t)n;
	}
	return 0;
}

/* An existing target that is not a regular file (/dev/null, a pipe, a
 * terminal) is written in place: rename(2) cannot replace it, and it keeps
 * no bytes at rest. */
static bool is_special(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && !S_ISREG(st.st_mode);
}

/* The temporary file's name: ".NAME.XXXXXX" in the target's directory, so
 * that rename(2) stays within one file system. */
static char *temp_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
	char *name = NULL;
	if (asprintf(&name, "%.*s.%s.XXXXXX", (int)dir_len, path, path + dir_len) < 0)
		return NULL;
	return name;
}

/* fsyncs the directory that holds path, so the rename survives a crash. */
static int sync_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path))
	                  : strdup(".");
	if (!dir)
		return ENOMEM;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (fd < 0)
		return errno;
	int r = fsync(fd) == 0 ? 0 : errno;
	close(fd);
	return r;
}

static int write_replacing(struct cli *cli, const char *path, const void *bytes, size_t len);

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
	if (is_special(path)) {
		int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
		int r = fd < 0 ? errno : write_all(fd, bytes, len);
		if (fd >= 0 && close(fd) != 0 && r == 0)
			r = errno;
		if (r != 0) {
			fprintf(cli->err, "%s: cannot write %s: %s\n", cli->prog, path,
			        strerror(r));
			return CLI_EXIT_USAGE;
		}
		return CLI_EXIT_OK;
	}
	return write_replacing(cli, path, bytes, len);
}

/*
 * The output may be a plaintext or a data key: it is never readable by
 * anyone else, not even for a moment, and never half written. A new file
 * (O_EXCL, mode 0600) in the same directory is written, fsync'ed and
 * renamed over the target, which thereby gets mode 0600 whatever its mode
 * was (a symbolic link is replaced, never followed); on any failure the
 * target is untouched and the temporary file removed.
 */
static int write_replacing(struct cli *cli, const char *path, const void *bytes, size_t len)
{
	char *temp = temp_name(path);
	if (!temp)
		return cli_out_of_memory(cli);
	int fd = mkostemp(temp, O_CLOEXEC); /* O_CREAT | O_EXCL, mode 0600 */
	int r = fd < 0 ? errno : 0;
	if (r == 0 && fchmod(fd, 0600) != 0) /* whatever the umask left */
		r = errno;
	if (r == 0)
		r = write_all(fd, bytes, len);
	if (r == 0 && fsync(fd) != 0)
		r = errno;
	if (fd >= 0 && close(fd) != 0 && r == 0)
		r = errno;
	if (r == 0 && rename(temp, path) != 0)
		r = errno;
	if (r != 0) {
		if (fd >= 0)
			unlink(temp);
		fprintf(cli->err, "%s: cannot write %s: %s\n", cli->prog, path, strerror(r));
		free(temp);
		return CLI_EXIT_USAGE;
	}
	free(temp);
	if ((r = sync_dir(path)) != 0) {
		fprintf(cli->err, "%s: %s is written but its directory could not be synced: %s\n",
		        cli->prog, path, strerror(r));
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
}

int cli_check_private_target(struct cli *cli, const char *path)
{
	/* A pipe, a device or a directory already at the path is refused: a
	 * secret written into one would reach whoever reads it, and rename(2)
	 * cannot replace it. lstat: a symbolic link is replaced itself. */
	struct stat st;
	if (!is_stdio(path) && lstat(path, &st) == 0 && !S_ISREG(st.st_mode) &&
	    !S_ISLNK(st.st_mode)) {
		fprintf(cli->err, "%s: %s exists and is not a regular file: give the path of a "
		        "new file\n", cli->prog, path);
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
}

int cli_write_private_file(struct cli *cli, const char *path, const void *bytes, size_t len)
{
	int code = cli_check_private_target(cli, path);
	if (code != CLI_EXIT_OK)
		return code;
	if (is_stdio(path))
		return cli_write_output(cli, path, bytes, len);
	return write_replacing(cli, path, bytes, len);
}
