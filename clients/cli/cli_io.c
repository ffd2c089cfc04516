/*
 * cli_io.c: strict parsers (k=v pairs, numbers, base64) and reading and
 * writing the commands' inputs and outputs.
 */
#include "clients/cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/random.h>
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

/* The directory that holds path, malloc'ed; NULL when out of memory. */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
}

/* fsyncs the directory that holds path, so the rename survives a crash. */
static int sync_dir(const char *path)
{
	char *dir = dir_of(path);
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

/* ---- streaming ---- */

int cli_input_open(struct cli *cli, const char *path, struct cli_input *in)
{
	struct stat st;
	memset(in, 0, sizeof *in);
	in->name = is_stdio(path) ? "standard input" : path;
	in->fd = STDIN_FILENO;
	if (!is_stdio(path) && (in->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		fprintf(cli->err, "%s: cannot read %s: %s\n", cli->prog, in->name, strerror(errno));
		in->fd = -1;
		return CLI_EXIT_USAGE;
	}
	/* A size of 0 is not trusted: files under /proc and /sys (and some
	 * FUSE file systems) say 0 and still hold bytes. */
	if (fstat(in->fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
		in->size_known = true;
		in->size = (uint64_t)st.st_size;
	}
	return CLI_EXIT_OK;
}

int cli_input_read(struct cli_input *in, uint8_t *buf, size_t want, size_t *got)
{
	*got = 0;
	while (*got < want && !in->eof) {
		ssize_t n = read(in->fd, buf + *got, want - *got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0)
			in->eof = true;
		*got += (size_t)n;
		in->taken += (uint64_t)n;
	}
	return 0;
}

int cli_input_error(struct cli *cli, const struct cli_input *in, int error)
{
	fprintf(cli->err, "%s: cannot read %s: %s\n", cli->prog, in->name, strerror(error));
	return CLI_EXIT_USAGE;
}

void cli_input_close(struct cli_input *in)
{
	if (in->fd > STDIN_FILENO)
		close(in->fd);
	in->fd = -1;
}

const char *cli_sink_name(const struct cli_sink *s)
{
	return s->path ? s->path : "standard output";
}

int cli_sink_open(struct cli *cli, const char *path, bool secret, struct cli_sink *s)
{
	memset(s, 0, sizeof *s);
	s->cli = cli;
	s->fd = -1;
	s->secret = secret;
	s->buf = secret ? kms_secure_alloc(CLI_IO_BUF) : malloc(CLI_IO_BUF);
	if (!s->buf)
		return secret ? cli_out_of_secure_memory(cli) : cli_out_of_memory(cli);
	if (is_stdio(path)) {
		/* What stdio holds goes first; then the bytes go to the
		 * descriptor straight from the buffer here, never through
		 * stdio's own (which is not wiped). A memory stream (tests) has
		 * no descriptor: stdio it is. */
		if (fflush(cli->out) != 0) {
			fprintf(cli->err, "%s: cannot write the output: %s\n", cli->prog,
			        strerror(errno));
			return CLI_EXIT_USAGE;
		}
		s->fd = fileno(cli->out);
		s->in_place = true;
		return CLI_EXIT_OK;
	}
	s->path = path;
	if (is_special(path)) {
		s->fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
		if (s->fd < 0) {
			fprintf(cli->err, "%s: cannot write %s: %s\n", cli->prog, path,
			        strerror(errno));
			cli_sink_abort(s);
			return CLI_EXIT_USAGE;
		}
		s->own_fd = true;
		s->in_place = true;
		return CLI_EXIT_OK;
	}
	/* An unnamed file (O_TMPFILE) in the target's directory, given a name
	 * and renamed over the target only once whole: a run that is
	 * interrupted or killed (Ctrl-C, SIGKILL, a crash) leaves nothing
	 * behind. Where the file system has no unnamed files, as
	 * write_replacing: a new file of mode 0600 with a random name beside
	 * the target, which an orderly failure removes. */
	char *dir = dir_of(path);
	if (!dir) {
		cli_sink_abort(s);
		return cli_out_of_memory(cli);
	}
	s->fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	int tmp_errno = errno;
	free(dir);
	if (s->fd >= 0) {
		s->own_fd = true;
		s->unnamed = true;
		if (fchmod(s->fd, 0600) != 0) { /* whatever the umask left */
			fprintf(cli->err, "%s: cannot write %s: %s\n", cli->prog, path,
			        strerror(errno));
			cli_sink_abort(s);
			return CLI_EXIT_USAGE;
		}
		return CLI_EXIT_OK;
	}
	if (tmp_errno != EOPNOTSUPP && tmp_errno != EISDIR && tmp_errno != EINVAL) {
		fprintf(cli->err, "%s: cannot write %s: %s\n", cli->prog, path, strerror(tmp_errno));
		cli_sink_abort(s);
		return CLI_EXIT_USAGE;
	}
	if (!(s->temp = temp_name(path))) {
		cli_sink_abort(s);
		return cli_out_of_memory(cli);
	}
	s->fd = mkostemp(s->temp, O_CLOEXEC); /* O_CREAT | O_EXCL, mode 0600 */
	int r = s->fd < 0 ? errno : 0;
	if (s->fd < 0) {
		free(s->temp); /* nothing was made: nothing to remove */
		s->temp = NULL;
	} else {
		s->own_fd = true;
		if (fchmod(s->fd, 0600) != 0) /* whatever the umask left */
			r = errno;
	}
	if (r != 0) {
		fprintf(cli->err, "%s: cannot write %s: %s\n", cli->prog, path, strerror(r));
		cli_sink_abort(s);
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
}

/* Writes the buffered bytes out. */
static int sink_drain(struct cli_sink *s)
{
	if (s->fill == 0)
		return 0;
	int r = 0;
	if (s->fd >= 0)
		r = write_all(s->fd, s->buf, s->fill);
	else if (fwrite(s->buf, 1, s->fill, s->cli->out) != s->fill || fflush(s->cli->out) != 0)
		r = errno ? errno : EIO;
	if (r == 0)
		s->written += s->fill;
	if (s->secret)
		kms_wipe(s->buf, s->fill);
	s->fill = 0;
	return r;
}

int cli_sink_write(void *sink, const uint8_t *bytes, size_t len)
{
	struct cli_sink *s = sink;
	if (s->error)
		return s->error;
	while (len > 0) {
		size_t n = CLI_IO_BUF - s->fill < len ? CLI_IO_BUF - s->fill : len;
		memcpy(s->buf + s->fill, bytes, n);
		s->fill += n;
		bytes += n;
		len -= n;
		if (s->fill == CLI_IO_BUF && (s->error = sink_drain(s)) != 0)
			return s->error;
	}
	return 0;
}

/* Gives the sink's unnamed file a random name beside the target (s->temp,
 * which the rename then moves over it). */
static int link_unnamed(struct cli_sink *s)
{
	char fd_path[64];
	snprintf(fd_path, sizeof fd_path, "/proc/self/fd/%d", s->fd);
	for (int tries = 0; tries < 16; tries++) {
		char *name = temp_name(s->path); /* ends in XXXXXX */
		if (!name)
			return ENOMEM;
		uint8_t rnd[6];
		if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
			free(name);
			return EIO;
		}
		static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
		char *x = name + strlen(name) - sizeof rnd;
		for (size_t i = 0; i < sizeof rnd; i++)
			x[i] = alphabet[rnd[i] % (sizeof alphabet - 1)];
		/* Through /proc as anyone may; AT_EMPTY_PATH needs a privilege. */
		int rc = linkat(AT_FDCWD, fd_path, AT_FDCWD, name, AT_SYMLINK_FOLLOW);
		if (rc != 0 && errno == ENOENT)
			rc = linkat(s->fd, "", AT_FDCWD, name, AT_EMPTY_PATH);
		if (rc == 0) {
			s->temp = name;
			s->unnamed = false;
			return 0;
		}
		int e = errno;
		free(name);
		if (e != EEXIST)
			return e;
	}
	return EEXIST;
}

int cli_sink_commit(struct cli_sink *s)
{
	struct cli *cli = s->cli;
	int r = s->error ? s->error : sink_drain(s);
	if (r == 0 && (s->temp || s->unnamed) && fsync(s->fd) != 0)
		r = errno;
	if (r == 0 && s->unnamed)
		r = link_unnamed(s);
	if (r == 0 && s->own_fd) {
		s->own_fd = false;
		if (close(s->fd) != 0)
			r = errno;
		s->fd = -1;
	}
	if (r == 0 && s->temp && rename(s->temp, s->path) != 0)
		r = errno;
	if (r != 0) {
		s->error = r;
		fprintf(cli->err, "%s: cannot write %s: %s\n", cli->prog, cli_sink_name(s),
		        strerror(r));
		cli_sink_abort(s);
		return CLI_EXIT_USAGE;
	}
	bool renamed = s->temp != NULL;
	free(s->temp);
	s->temp = NULL;
	cli_sink_abort(s); /* frees the buffer; the file is in place */
	if (renamed && (r = sync_dir(s->path)) != 0) {
		fprintf(cli->err, "%s: %s is written but its directory could not be synced: %s\n",
		        cli->prog, s->path, strerror(r));
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
}

uint64_t cli_sink_abort(struct cli_sink *s)
{
	if (s->buf) {
		if (s->secret)
			kms_secure_free(s->buf); /* wiped */
		else
			free(s->buf);
		s->buf = NULL;
	}
	s->fill = 0;
	if (s->own_fd)
		close(s->fd);
	s->own_fd = false;
	s->fd = -1;
	if (s->temp) {
		unlink(s->temp); /* and what was written into it */
		free(s->temp);
		s->temp = NULL;
	}
	uint64_t gone = s->in_place ? s->written : 0;
	s->in_place = false; /* said once */
	return gone;
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
