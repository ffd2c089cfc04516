/*
 * diskfault: an LD_PRELOAD library for disk-fault tests. Loaded into kmsd
 * (the harness puts it in LD_PRELOAD through kmsd's environment), it sits in
 * front of libc's file calls and fails the ones its control file names
 * with the errno it names (EIO, ENOSPC, ...), for files under a path
 * prefix: the store's SQLite files, the audit log's log.bin, its tiles.
 * Test-only: nothing in the product links it or knows it is there.
 *
 * Environment:
 *   DISKFAULT_CONTROL  the control file (none, or missing: a pass-through)
 *   DISKFAULT_LOG      a file that gets one line per injected fault
 *                      ("pwrite /dir/kms.db-wal EIO"), optional
 *
 * The control file is read again whenever it changes (a test writes a new
 * one and renames it into place), and every rule's counters restart then.
 * One rule per line, '#' starts a comment (docs/fault-injection.md):
 *
 *   fail CALLS PREFIX ERRNO [nth N] [times K]
 *       CALLS is '*' or a comma-separated list of write, pwrite, fsync,
 *       fdatasync, ftruncate, fallocate, rename, creat (an open or openat
 *       with O_CREAT); PREFIX a path prefix (absolute); ERRNO EIO, ENOSPC,
 *       EDQUOT, EROFS or a number. With no option every matching call
 *       fails; nth N: only the Nth matching call (counted from the file's
 *       load); times K: at most K faults from this rule.
 *
 * A failed call does nothing and returns -1 with the errno, as a disk that
 * refuses the write, the sync or the rename would. The file a descriptor
 * names is read from /proc/self/fd; a rename matches on either path.
 * Calls libc makes inside itself (mkstemp's open, stdio's writes) are not
 * seen. A line the library cannot read aborts the process: a rule silently
 * ignored would let a fault test pass without its fault.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define RULES_MAX 16
#define LINE_MAX_LEN 1024

enum call_bit {
	C_WRITE = 1u << 0,
	C_PWRITE = 1u << 1,
	C_FSYNC = 1u << 2,
	C_FDATASYNC = 1u << 3,
	C_FTRUNCATE = 1u << 4,
	C_FALLOCATE = 1u << 5,
	C_RENAME = 1u << 6,
	C_CREAT = 1u << 7,
};

static const struct {
	const char *name;
	unsigned bit;
} calls[] = {
	{ "write", C_WRITE },         { "pwrite", C_PWRITE },
	{ "fsync", C_FSYNC },         { "fdatasync", C_FDATASYNC },
	{ "ftruncate", C_FTRUNCATE }, { "fallocate", C_FALLOCATE },
	{ "rename", C_RENAME },       { "creat", C_CREAT },
};

static const struct {
	const char *name;
	int value;
} errnos[] = {
	{ "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EDQUOT", EDQUOT }, { "EROFS", EROFS },
};

typedef struct rule {
	unsigned calls;
	char prefix[PATH_MAX];
	size_t prefix_len;
	int err;
	unsigned long nth, times;
	unsigned long seen, faults;
} rule;

static struct {
	pthread_mutex_t lock;
	rule rules[RULES_MAX];
	size_t n_rules;
	struct stat seen;
	bool seen_valid;
} g = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* libc's own functions, found once. */
static struct {
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*pwrite)(int, const void *, size_t, off_t);
	ssize_t (*pwritev)(int, const struct iovec *, int, off_t);
	ssize_t (*writev)(int, const struct iovec *, int);
	int (*fsync)(int);
	int (*fdatasync)(int);
	int (*ftruncate)(int, off_t);
	int (*fallocate)(int, int, off_t, off_t);
	int (*posix_fallocate)(int, off_t, off_t);
	int (*rename)(const char *, const char *);
	int (*renameat)(int, const char *, int, const char *);
	int (*renameat2)(int, const char *, int, const char *, unsigned);
	int (*open)(const char *, int, ...);
	int (*openat)(int, const char *, int, ...);
	int (*close)(int);
} real;

static pthread_once_t real_once = PTHREAD_ONCE_INIT;

static void *need(const char *name)
{
	void *f = dlsym(RTLD_NEXT, name);
	if (!f) {
		fprintf(stderr, "diskfault: libc has no %s\n", name);
		abort();
	}
	return f;
}

static void find_real(void)
{
	*(void **)&real.write = need("write");
	*(void **)&real.pwrite = need("pwrite");
	*(void **)&real.pwritev = need("pwritev");
	*(void **)&real.writev = need("writev");
	*(void **)&real.fsync = need("fsync");
	*(void **)&real.fdatasync = need("fdatasync");
	*(void **)&real.ftruncate = need("ftruncate");
	*(void **)&real.fallocate = need("fallocate");
	*(void **)&real.posix_fallocate = need("posix_fallocate");
	*(void **)&real.rename = need("rename");
	*(void **)&real.renameat = need("renameat");
	*(void **)&real.renameat2 = need("renameat2");
	*(void **)&real.open = need("open");
	*(void **)&real.openat = need("openat");
	*(void **)&real.close = need("close");
}

static void init_real(void)
{
	(void)pthread_once(&real_once, find_real);
}

/* ---- the control file ---- */

static void bad_line(const char *path, unsigned lineno, const char *why)
{
	fprintf(stderr, "diskfault: %s line %u: %s\n", path, lineno, why);
	abort();
}

static bool parse_ulong(const char *s, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end)
		return false;
	*out = v;
	return true;
}

static unsigned parse_calls(char *list, const char *path, unsigned lineno)
{
	if (!strcmp(list, "*"))
		return ~0u;
	unsigned bits = 0;
	char *save = NULL;
	for (char *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
		unsigned bit = 0;
		for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++)
			if (!strcmp(name, calls[i].name))
				bit = calls[i].bit;
		if (!bit)
			bad_line(path, lineno, "unknown call (write, pwrite, fsync, fdatasync, "
			         "ftruncate, fallocate, rename, creat or *)");
		bits |= bit;
	}
	return bits;
}

static int parse_errno(const char *s, const char *path, unsigned lineno)
{
	for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++)
		if (!strcmp(s, errnos[i].name))
			return errnos[i].value;
	unsigned long v;
	if (!parse_ulong(s, &v) || v == 0 || v > 4095)
		bad_line(path, lineno, "unknown errno (EIO, ENOSPC, EDQUOT, EROFS or a number)");
	return (int)v;
}

static void parse_rule(char **save, const char *path, unsigned lineno)
{
	if (g.n_rules == RULES_MAX)
		bad_line(path, lineno, "too many rules");
	rule *r = &g.rules[g.n_rules];
	memset(r, 0, sizeof *r);
	char *list = strtok_r(NULL, " \t\r\n", save);
	char *prefix = strtok_r(NULL, " \t\r\n", save);
	char *err = strtok_r(NULL, " \t\r\n", save);
	if (!list || !prefix || !err || prefix[0] != '/' || strlen(prefix) >= sizeof r->prefix)
		bad_line(path, lineno, "want: fail CALLS /PREFIX ERRNO [nth N] [times K]");
	r->calls = parse_calls(list, path, lineno);
	snprintf(r->prefix, sizeof r->prefix, "%s", prefix);
	r->prefix_len = strlen(prefix);
	r->err = parse_errno(err, path, lineno);
	for (char *opt; (opt = strtok_r(NULL, " \t\r\n", save));) {
		char *val = strtok_r(NULL, " \t\r\n", save);
		unsigned long v = 0;
		if (!val || !parse_ulong(val, &v) || v == 0)
			bad_line(path, lineno, "an option needs a number above 0");
		if (!strcmp(opt, "nth"))
			r->nth = v;
		else if (!strcmp(opt, "times"))
			r->times = v;
		else
			bad_line(path, lineno, "unknown option (nth N, times K)");
	}
	g.n_rules++;
}

static void load_rules(const char *path)
{
	g.n_rules = 0;
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	char line[LINE_MAX_LEN];
	unsigned lineno = 0;
	while (fgets(line, sizeof line, f)) {
		lineno++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char *save = NULL;
		char *word = strtok_r(line, " \t\r\n", &save);
		if (!word)
			continue;
		if (strcmp(word, "fail") != 0)
			bad_line(path, lineno, "unknown rule (fail)");
		parse_rule(&save, path, lineno);
	}
	fclose(f);
}

/* Reloads the control file when it changed since the last look (under
 * g.lock). */
static void refresh(void)
{
	const char *path = getenv("DISKFAULT_CONTROL");
	if (!path)
		return;
	struct stat st;
	if (stat(path, &st) != 0)
		memset(&st, 0, sizeof st);
	if (g.seen_valid && st.st_ino == g.seen.st_ino && st.st_size == g.seen.st_size &&
	    st.st_mtim.tv_sec == g.seen.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == g.seen.st_mtim.tv_nsec)
		return;
	g.seen = st;
	g.seen_valid = true;
	load_rules(path);
}

/* ---- deciding ---- */

static const char *call_name(unsigned bit)
{
	for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++)
		if (calls[i].bit == bit)
			return calls[i].name;
	return "?";
}

static const char *errno_name(int err)
{
	for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++)
		if (errnos[i].value == err)
			return errnos[i].name;
	return "errno";
}

static void note(unsigned bit, const char *path, int err)
{
	const char *log = getenv("DISKFAULT_LOG");
	if (!log)
		return;
	int fd = real.open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	char line[PATH_MAX + 64];
	int n = snprintf(line, sizeof line, "%s %s %s\n", call_name(bit), path, errno_name(err));
	if (n > 0)
		(void)!real.write(fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
	real.close(fd);
}

/* The errno the call fails with (0: it goes through). path2 may be NULL. */
static int decide(unsigned bit, const char *path, const char *path2)
{
	pthread_mutex_lock(&g.lock);
	refresh();
	int err = 0;
	const char *hit = path;
	for (size_t i = 0; i < g.n_rules && !err; i++) {
		rule *r = &g.rules[i];
		if (!(r->calls & bit))
			continue;
		if (path && !strncmp(path, r->prefix, r->prefix_len))
			hit = path;
		else if (path2 && !strncmp(path2, r->prefix, r->prefix_len))
			hit = path2;
		else
			continue;
		r->seen++;
		if (r->nth && r->seen != r->nth)
			continue;
		if (r->times && r->faults >= r->times)
			continue;
		r->faults++;
		err = r->err;
	}
	if (err)
		note(bit, hit, err);
	pthread_mutex_unlock(&g.lock);
	return err;
}

static bool any_rules(void)
{
	pthread_mutex_lock(&g.lock);
	refresh();
	bool any = g.n_rules > 0;
	pthread_mutex_unlock(&g.lock);
	return any;
}

/* The path fd names, or "" (out holds PATH_MAX). */
static void fd_path(int fd, char *out)
{
	char link[64];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, out, PATH_MAX - 1);
	out[n > 0 ? n : 0] = '\0';
}

/* An absolute form of path, relative to dirfd (AT_FDCWD: the cwd). */
static void abs_path(int dirfd, const char *path, char *out)
{
	if (!path || path[0] == '/') {
		snprintf(out, PATH_MAX, "%s", path ? path : "");
		return;
	}
	char dir[PATH_MAX];
	if (dirfd == AT_FDCWD) {
		if (!getcwd(dir, sizeof dir))
			dir[0] = '\0';
	} else {
		fd_path(dirfd, dir);
	}
	snprintf(out, PATH_MAX, "%.*s/%s", PATH_MAX / 2, dir, path);
}

static int fd_fault(unsigned bit, int fd)
{
	init_real();
	if (!any_rules())
		return 0;
	char path[PATH_MAX];
	fd_path(fd, path);
	return decide(bit, path, NULL);
}

static int path_fault(unsigned bit, int dirfd1, const char *p1, int dirfd2, const char *p2)
{
	init_real();
	if (!any_rules())
		return 0;
	char a[PATH_MAX], b[PATH_MAX];
	abs_path(dirfd1, p1, a);
	if (p2)
		abs_path(dirfd2, p2, b);
	return decide(bit, a, p2 ? b : NULL);
}

#define FAIL_WITH(err, value)          \
	do {                           \
		if (err) {             \
			errno = (err); \
			return (value); \
		}                      \
	} while (0)

/* ---- the calls ---- */

ssize_t write(int fd, const void *buf, size_t n)
{
	FAIL_WITH(fd_fault(C_WRITE, fd), -1);
	return real.write(fd, buf, n);
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
	FAIL_WITH(fd_fault(C_WRITE, fd), -1);
	return real.writev(fd, iov, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	FAIL_WITH(fd_fault(C_PWRITE, fd), -1);
	return real.pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	return pwrite(fd, buf, n, off);
}

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
	FAIL_WITH(fd_fault(C_PWRITE, fd), -1);
	return real.pwritev(fd, iov, n, off);
}

int fsync(int fd)
{
	FAIL_WITH(fd_fault(C_FSYNC, fd), -1);
	return real.fsync(fd);
}

int fdatasync(int fd)
{
	FAIL_WITH(fd_fault(C_FDATASYNC, fd), -1);
	return real.fdatasync(fd);
}

int ftruncate(int fd, off_t len)
{
	FAIL_WITH(fd_fault(C_FTRUNCATE, fd), -1);
	return real.ftruncate(fd, len);
}

int ftruncate64(int fd, off_t len)
{
	return ftruncate(fd, len);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
	FAIL_WITH(fd_fault(C_FALLOCATE, fd), -1);
	return real.fallocate(fd, mode, off, len);
}

int fallocate64(int fd, int mode, off_t off, off_t len)
{
	return fallocate(fd, mode, off, len);
}

int posix_fallocate(int fd, off_t off, off_t len)
{
	int err = fd_fault(C_FALLOCATE, fd);
	if (err)
		return err; /* posix_fallocate returns the error */
	return real.posix_fallocate(fd, off, len);
}

int posix_fallocate64(int fd, off_t off, off_t len)
{
	return posix_fallocate(fd, off, len);
}

int rename(const char *from, const char *to)
{
	FAIL_WITH(path_fault(C_RENAME, AT_FDCWD, from, AT_FDCWD, to), -1);
	return real.rename(from, to);
}

int renameat(int fromfd, const char *from, int tofd, const char *to)
{
	FAIL_WITH(path_fault(C_RENAME, fromfd, from, tofd, to), -1);
	return real.renameat(fromfd, from, tofd, to);
}

int renameat2(int fromfd, const char *from, int tofd, const char *to, unsigned flags)
{
	FAIL_WITH(path_fault(C_RENAME, fromfd, from, tofd, to), -1);
	return real.renameat2(fromfd, from, tofd, to, flags);
}

static mode_t mode_arg(int flags, va_list ap)
{
	return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, unsigned) : 0;
}

int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	if (flags & O_CREAT)
		FAIL_WITH(path_fault(C_CREAT, AT_FDCWD, path, AT_FDCWD, NULL), -1);
	init_real();
	return real.open(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	return open(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	if (flags & O_CREAT)
		FAIL_WITH(path_fault(C_CREAT, dirfd, path, AT_FDCWD, NULL), -1);
	init_real();
	return real.openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	return openat(dirfd, path, flags, mode);
}
