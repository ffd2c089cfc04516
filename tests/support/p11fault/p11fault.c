/*
 * p11fault: a PKCS#11 module for fault tests. It loads the real module
 * (SoftHSMv2 unless P11FAULT_MODULE names another), forwards every call to
 * it, and on the way fails, slows or unplugs the calls its control file
 * says. Test-only: nothing in the product links it or knows it is there;
 * kmsd loads it as it would any module ([hsm] module = .../libp11fault.so).
 *
 * Environment:
 *   P11FAULT_MODULE   the real module (default /usr/lib/softhsm/libsofthsm2.so)
 *   P11FAULT_CONTROL  the control file (none: a plain pass-through)
 *   P11FAULT_LOG      a file that gets one line per injected fault (optional)
 *
 * The control file is read again whenever it changes (a test writes a new
 * one and renames it into place), and every rule's counters restart then.
 * One rule per line, '#' starts a comment; docs/fault-injection.md:
 *
 *   fail FUNC RV [nth N] [every N] [rate PERCENT] [times K]
 *       FUNC is a function name (C_Encrypt) or '*'; RV a CKR_ name from
 *       the list below or a number. With no nth/every/rate it fails every
 *       matching call. nth N: only the Nth matching call (counted from the
 *       file's load). every N: every Nth. rate P: each call with
 *       probability P% (a fixed-seed generator: the same file and calls
 *       fail the same way every run; "seed S" changes it). times K: at most
 *       K faults from this rule.
 *   delay FUNC MS      each matching call sleeps MS milliseconds first
 *   hold FUNC PATH     each matching call logs "FUNC held" and waits until
 *                      PATH exists (at most 60 s), then goes on: a test
 *                      holds the HSM busy for exactly as long as it needs
 *   unplug             the token is gone: every call fails
 *                      CKR_DEVICE_REMOVED, C_GetSlotList lists no token.
 *                      When the line goes away the token comes back as a
 *                      re-plugged device would: its sessions are closed
 *                      (so the login is gone) and its slot has a new id.
 *   seed S
 *   serial TEXT        C_GetTokenInfo reports this serial number (up to
 *                      16 characters): another device under the same label
 *
 * The first "fail" rule that matches a call decides it; delays add up;
 * "unplug" comes before both.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#define RULES_MAX 32
#define LINE_MAX_LEN 256
#define FUNC_NAME_MAX 32
/* A re-plugged slot's id: the real one XOR this times the plug count. */
#define SLOT_GENERATION_MASK 0x5a5a0000ul

typedef enum rule_kind { RULE_FAIL, RULE_DELAY, RULE_HOLD } rule_kind;

typedef struct rule {
	rule_kind kind;
	char func[FUNC_NAME_MAX]; /* "*" for any */
	CK_RV rv;
	unsigned long nth, every, rate_percent, times, delay_ms;
	unsigned long calls, faults;
	char hold_path[200];
} rule;

static struct {
	pthread_mutex_t lock;
	CK_FUNCTION_LIST *real;
	void *dl;
	rule rules[RULES_MAX];
	size_t n_rules;
	bool unplugged;
	unsigned long generation; /* re-plugs so far */
	uint64_t rng;
	char serial[17]; /* "serial" rule: reported instead of the token's, or "" */
	struct stat seen; /* the control file as last read */
	bool seen_valid;
} g = { .lock = PTHREAD_MUTEX_INITIALIZER, .rng = 0x9e3779b97f4a7c15ull };

static CK_FUNCTION_LIST wrapped;

static const struct {
	const char *name;
	CK_RV rv;
} rv_names[] = {
	{ "CKR_OK", CKR_OK },
	{ "CKR_GENERAL_ERROR", CKR_GENERAL_ERROR },
	{ "CKR_HOST_MEMORY", CKR_HOST_MEMORY },
	{ "CKR_DEVICE_ERROR", CKR_DEVICE_ERROR },
	{ "CKR_DEVICE_MEMORY", CKR_DEVICE_MEMORY },
	{ "CKR_DEVICE_REMOVED", CKR_DEVICE_REMOVED },
	{ "CKR_TOKEN_NOT_PRESENT", CKR_TOKEN_NOT_PRESENT },
	{ "CKR_SESSION_HANDLE_INVALID", CKR_SESSION_HANDLE_INVALID },
	{ "CKR_SESSION_CLOSED", CKR_SESSION_CLOSED },
	{ "CKR_USER_NOT_LOGGED_IN", CKR_USER_NOT_LOGGED_IN },
	{ "CKR_OBJECT_HANDLE_INVALID", CKR_OBJECT_HANDLE_INVALID },
	{ "CKR_KEY_HANDLE_INVALID", CKR_KEY_HANDLE_INVALID },
	{ "CKR_FUNCTION_FAILED", CKR_FUNCTION_FAILED },
	{ "CKR_SLOT_ID_INVALID", CKR_SLOT_ID_INVALID },
	{ "CKR_OPERATION_ACTIVE", CKR_OPERATION_ACTIVE },
	{ "CKR_SESSION_COUNT", CKR_SESSION_COUNT },
};

static const char *rv_name(CK_RV rv)
{
	for (size_t i = 0; i < sizeof rv_names / sizeof rv_names[0]; i++)
		if (rv_names[i].rv == rv)
			return rv_names[i].name;
	return "CKR_?";
}

static bool parse_rv(const char *s, CK_RV *out)
{
	for (size_t i = 0; i < sizeof rv_names / sizeof rv_names[0]; i++)
		if (!strcmp(rv_names[i].name, s)) {
			*out = rv_names[i].rv;
			return true;
		}
	char *end = NULL;
	errno = 0;
	unsigned long v = strtoul(s, &end, 0);
	if (errno || !end || *end || end == s)
		return false;
	*out = v;
	return true;
}

static bool parse_ulong(const char *s, unsigned long *out)
{
	char *end = NULL;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || !end || *end || end == s)
		return false;
	*out = v;
	return true;
}

/* A line the module cannot read stops the test loudly: a rule silently
 * ignored would let a fault test pass without its fault. */
static void bad_line(const char *path, unsigned lineno, const char *why)
{
	fprintf(stderr, "p11fault: %s line %u: %s\n", path, lineno, why);
	abort();
}

static void parse_fail_options(rule *r, char **save, const char *path, unsigned lineno)
{
	for (char *opt; (opt = strtok_r(NULL, " \t\r\n", save));) {
		char *val = strtok_r(NULL, " \t\r\n", save);
		unsigned long v = 0;
		if (!val || !parse_ulong(val, &v))
			bad_line(path, lineno, "an option needs a number");
		if (!strcmp(opt, "nth") && v > 0)
			r->nth = v;
		else if (!strcmp(opt, "every") && v > 0)
			r->every = v;
		else if (!strcmp(opt, "rate") && v <= 100)
			r->rate_percent = v;
		else if (!strcmp(opt, "times") && v > 0)
			r->times = v;
		else
			bad_line(path, lineno, "unknown option or value (nth N, every N, rate 0..100, "
			         "times K)");
	}
}

/* Reads the control file into g (under g.lock). */
static void load_rules(const char *path)
{
	g.n_rules = 0;
	g.serial[0] = '\0';
	bool unplugged = false;
	FILE *f = fopen(path, "r");
	if (f) {
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
			if (!strcmp(word, "unplug")) {
				unplugged = true;
				continue;
			}
			if (!strcmp(word, "serial")) {
				char *v = strtok_r(NULL, " \t\r\n", &save);
				if (!v || strlen(v) > 16)
					bad_line(path, lineno, "serial needs 1 to 16 characters");
				snprintf(g.serial, sizeof g.serial, "%s", v);
				continue;
			}
			if (!strcmp(word, "seed")) {
				char *v = strtok_r(NULL, " \t\r\n", &save);
				unsigned long s = 0;
				if (!v || !parse_ulong(v, &s))
					bad_line(path, lineno, "seed needs a number");
				g.rng = 0x9e3779b97f4a7c15ull ^ s;
				continue;
			}
			if (g.n_rules == RULES_MAX)
				bad_line(path, lineno, "too many rules");
			rule *r = &g.rules[g.n_rules];
			memset(r, 0, sizeof *r);
			char *func = strtok_r(NULL, " \t\r\n", &save);
			char *arg = strtok_r(NULL, " \t\r\n", &save);
			if (!func || !arg || strlen(func) >= sizeof r->func)
				bad_line(path, lineno, "want: fail FUNC RV [...] or delay FUNC MS");
			snprintf(r->func, sizeof r->func, "%s", func);
			if (!strcmp(word, "fail")) {
				r->kind = RULE_FAIL;
				if (!parse_rv(arg, &r->rv))
					bad_line(path, lineno, "unknown CKR_ value");
				parse_fail_options(r, &save, path, lineno);
			} else if (!strcmp(word, "hold")) {
				r->kind = RULE_HOLD;
				if (strlen(arg) >= sizeof r->hold_path)
					bad_line(path, lineno, "hold: the path is too long");
				snprintf(r->hold_path, sizeof r->hold_path, "%s", arg);
			} else if (!strcmp(word, "delay")) {
				r->kind = RULE_DELAY;
				if (!parse_ulong(arg, &r->delay_ms))
					bad_line(path, lineno, "delay needs milliseconds");
			} else {
				bad_line(path, lineno, "unknown rule (fail, delay, hold, unplug, seed)");
			}
			g.n_rules++;
		}
		fclose(f);
	}
	if (g.unplugged && !unplugged) {
		/* Plugged back in: a device reset ends every session (and so the
		 * login) and the slot comes back under a new id. */
		CK_ULONG n = 0;
		if (g.real->C_GetSlotList(CK_TRUE, NULL, &n) == CKR_OK && n > 0 && n < 64) {
			CK_SLOT_ID slots[64];
			if (g.real->C_GetSlotList(CK_TRUE, slots, &n) == CKR_OK)
				for (CK_ULONG i = 0; i < n; i++)
					(void)g.real->C_CloseAllSessions(slots[i]);
		}
		g.generation++;
	}
	g.unplugged = unplugged;
}

/* Reloads the control file when it changed since the last look. */
static void refresh(void)
{
	const char *path = getenv("P11FAULT_CONTROL");
	if (!path)
		return;
	struct stat st;
	bool present = stat(path, &st) == 0;
	if (!present)
		memset(&st, 0, sizeof st);
	if (g.seen_valid && st.st_ino == g.seen.st_ino && st.st_size == g.seen.st_size &&
	    st.st_mtim.tv_sec == g.seen.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == g.seen.st_mtim.tv_nsec)
		return;
	g.seen = st;
	g.seen_valid = true;
	load_rules(path);
}

static uint64_t next_random(void)
{
	/* xorshift64* */
	g.rng ^= g.rng >> 12;
	g.rng ^= g.rng << 25;
	g.rng ^= g.rng >> 27;
	return g.rng * 0x2545f4914f6cdd1dull;
}

static void note(const char *func, const char *what)
{
	const char *path = getenv("P11FAULT_LOG");
	if (!path)
		return;
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	char line[96];
	int n = snprintf(line, sizeof line, "%s %s\n", func, what);
	if (n > 0)
		(void)!write(fd, line, (size_t)n);
	close(fd);
}

/* Whether func fails now (and with which rv), and how long it waits first.
 * device: whether the call reaches the token (unplugging fails it); the
 * library's own calls (C_Initialize, C_GetInfo, C_GetSlotList) do not. */
static bool decide(const char *func, bool device, CK_RV *rv, unsigned long *delay_ms,
                   bool *unplugged, char hold[200])
{
	pthread_mutex_lock(&g.lock);
	refresh();
	*delay_ms = 0;
	hold[0] = '\0';
	*unplugged = g.unplugged;
	bool fail = false;
	if (g.unplugged && device) {
		*rv = CKR_DEVICE_REMOVED;
		fail = true;
	}
	for (size_t i = 0; i < g.n_rules; i++) {
		rule *r = &g.rules[i];
		if (strcmp(r->func, "*") && strcmp(r->func, func))
			continue;
		if (r->kind == RULE_DELAY) {
			*delay_ms += r->delay_ms;
			continue;
		}
		if (r->kind == RULE_HOLD) {
			if (!hold[0])
				memcpy(hold, r->hold_path, sizeof r->hold_path);
			continue;
		}
		if (fail)
			continue;
		r->calls++;
		if (r->times && r->faults >= r->times)
			continue;
		bool hit;
		if (r->nth)
			hit = r->calls == r->nth;
		else if (r->every)
			hit = r->calls % r->every == 0;
		else if (r->rate_percent)
			hit = next_random() % 100 < r->rate_percent;
		else
			hit = true;
		if (hit) {
			r->faults++;
			*rv = r->rv;
			fail = true;
		}
	}
	pthread_mutex_unlock(&g.lock);
	if (fail)
		note(func, rv_name(*rv));
	return fail;
}

static void pause_ms(unsigned long ms)
{
	struct timespec t = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000 };
	while (nanosleep(&t, &t) != 0 && errno == EINTR)
		;
}

/* Waits (at most 60 s) until path exists. */
static void hold_until(const char *func, const char *path)
{
	note(func, "held");
	for (int i = 0; i < 12000 && access(path, F_OK) != 0; i++)
		pause_ms(5);
}

/* The fault (if any) for this call, after its hold and delay. */
static bool faulted(const char *func, bool device, CK_RV *rv)
{
	unsigned long delay = 0;
	bool unplugged;
	char hold[200];
	bool fail = decide(func, device, rv, &delay, &unplugged, hold);
	if (hold[0])
		hold_until(func, hold);
	if (delay)
		pause_ms(delay);
	return fail;
}

#define GUARD_AS(func, device)                        \
	do {                                          \
		CK_RV injected_;                      \
		if (faulted(#func, device, &injected_)) \
			return injected_;             \
	} while (0)
#define GUARD(func) GUARD_AS(func, true)

/* Slot ids as the application sees them: changed by every re-plug. */
static CK_SLOT_ID slot_out(CK_SLOT_ID real)
{
	pthread_mutex_lock(&g.lock);
	CK_SLOT_ID id = real ^ (g.generation * SLOT_GENERATION_MASK);
	pthread_mutex_unlock(&g.lock);
	return id;
}

/* The real slot behind an application's id, or false for an id from
 * before the last re-plug (or never given out). */
static bool slot_in(CK_SLOT_ID seen, CK_SLOT_ID *real)
{
	pthread_mutex_lock(&g.lock);
	CK_SLOT_ID candidate = seen ^ (g.generation * SLOT_GENERATION_MASK);
	pthread_mutex_unlock(&g.lock);
	CK_ULONG n = 0;
	if (g.real->C_GetSlotList(CK_FALSE, NULL, &n) != CKR_OK || n == 0 || n > 64)
		return false;
	CK_SLOT_ID slots[64];
	if (g.real->C_GetSlotList(CK_FALSE, slots, &n) != CKR_OK)
		return false;
	for (CK_ULONG i = 0; i < n; i++)
		if (slots[i] == candidate) {
			*real = candidate;
			return true;
		}
	return false;
}

/* ---- the wrapped calls: those kmsd makes ---- */

static CK_RV w_Initialize(void *args)
{
	GUARD_AS(C_Initialize, false);
	return g.real->C_Initialize(args);
}

static CK_RV w_Finalize(void *reserved)
{
	return g.real->C_Finalize(reserved);
}

static CK_RV w_GetInfo(CK_INFO *info)
{
	GUARD_AS(C_GetInfo, false);
	return g.real->C_GetInfo(info);
}

static CK_RV w_GetSlotList(CK_BBOOL present, CK_SLOT_ID *list, CK_ULONG *count)
{
	unsigned long delay = 0;
	CK_RV rv = CKR_OK;
	bool unplugged;
	char hold[200];
	bool fail = decide("C_GetSlotList", false, &rv, &delay, &unplugged, hold);
	if (hold[0])
		hold_until("C_GetSlotList", hold);
	if (delay)
		pause_ms(delay);
	if (fail)
		return rv;
	if (unplugged && present) { /* the slot list answers, with no token in it */
		*count = 0;
		return CKR_OK;
	}
	rv = g.real->C_GetSlotList(present, list, count);
	if (rv == CKR_OK && list)
		for (CK_ULONG i = 0; i < *count; i++)
			list[i] = slot_out(list[i]);
	return rv;
}

static CK_RV w_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO *info)
{
	GUARD(C_GetTokenInfo);
	CK_SLOT_ID real;
	if (!slot_in(slot, &real))
		return CKR_SLOT_ID_INVALID;
	CK_RV rv = g.real->C_GetTokenInfo(real, info);
	pthread_mutex_lock(&g.lock);
	if (rv == CKR_OK && g.serial[0]) {
		memset(info->serialNumber, ' ', sizeof info->serialNumber);
		memcpy(info->serialNumber, g.serial, strlen(g.serial));
	}
	pthread_mutex_unlock(&g.lock);
	return rv;
}

static CK_RV w_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO *info)
{
	GUARD(C_GetSlotInfo);
	CK_SLOT_ID real;
	if (!slot_in(slot, &real))
		return CKR_SLOT_ID_INVALID;
	return g.real->C_GetSlotInfo(real, info);
}

static CK_RV w_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
                                CK_MECHANISM_INFO *info)
{
	GUARD(C_GetMechanismInfo);
	CK_SLOT_ID real;
	if (!slot_in(slot, &real))
		return CKR_SLOT_ID_INVALID;
	return g.real->C_GetMechanismInfo(real, type, info);
}

static CK_RV w_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE *list, CK_ULONG *count)
{
	GUARD(C_GetMechanismList);
	CK_SLOT_ID real;
	if (!slot_in(slot, &real))
		return CKR_SLOT_ID_INVALID;
	return g.real->C_GetMechanismList(real, list, count);
}

static CK_RV w_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, void *app, CK_NOTIFY notify,
                           CK_SESSION_HANDLE *s)
{
	GUARD(C_OpenSession);
	CK_SLOT_ID real;
	if (!slot_in(slot, &real))
		return CKR_SLOT_ID_INVALID;
	return g.real->C_OpenSession(real, flags, app, notify, s);
}

static CK_RV w_CloseSession(CK_SESSION_HANDLE s)
{
	GUARD(C_CloseSession);
	return g.real->C_CloseSession(s);
}

static CK_RV w_CloseAllSessions(CK_SLOT_ID slot)
{
	GUARD(C_CloseAllSessions);
	CK_SLOT_ID real;
	if (!slot_in(slot, &real))
		return CKR_SLOT_ID_INVALID;
	return g.real->C_CloseAllSessions(real);
}

static CK_RV w_GetSessionInfo(CK_SESSION_HANDLE s, CK_SESSION_INFO *info)
{
	GUARD(C_GetSessionInfo);
	CK_RV rv = g.real->C_GetSessionInfo(s, info);
	if (rv == CKR_OK)
		info->slotID = slot_out(info->slotID);
	return rv;
}

static CK_RV w_Login(CK_SESSION_HANDLE s, CK_USER_TYPE user, unsigned char *pin, CK_ULONG len)
{
	GUARD(C_Login);
	return g.real->C_Login(s, user, pin, len);
}

static CK_RV w_Logout(CK_SESSION_HANDLE s)
{
	GUARD(C_Logout);
	return g.real->C_Logout(s);
}

static CK_RV w_CreateObject(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n,
                            CK_OBJECT_HANDLE *o)
{
	GUARD(C_CreateObject);
	return g.real->C_CreateObject(s, t, n, o);
}

static CK_RV w_DestroyObject(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o)
{
	GUARD(C_DestroyObject);
	return g.real->C_DestroyObject(s, o);
}

static CK_RV w_GetAttributeValue(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE *t,
                                 CK_ULONG n)
{
	GUARD(C_GetAttributeValue);
	return g.real->C_GetAttributeValue(s, o, t, n);
}

static CK_RV w_FindObjectsInit(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n)
{
	GUARD(C_FindObjectsInit);
	return g.real->C_FindObjectsInit(s, t, n);
}

static CK_RV w_FindObjects(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE *o, CK_ULONG max,
                           CK_ULONG *n)
{
	GUARD(C_FindObjects);
	return g.real->C_FindObjects(s, o, max, n);
}

static CK_RV w_FindObjectsFinal(CK_SESSION_HANDLE s)
{
	GUARD(C_FindObjectsFinal);
	return g.real->C_FindObjectsFinal(s);
}

static CK_RV w_EncryptInit(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE k)
{
	GUARD(C_EncryptInit);
	return g.real->C_EncryptInit(s, m, k);
}

static CK_RV w_Encrypt(CK_SESSION_HANDLE s, unsigned char *in, CK_ULONG in_len,
                       unsigned char *out, CK_ULONG *out_len)
{
	GUARD(C_Encrypt);
	return g.real->C_Encrypt(s, in, in_len, out, out_len);
}

static CK_RV w_DecryptInit(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE k)
{
	GUARD(C_DecryptInit);
	return g.real->C_DecryptInit(s, m, k);
}

static CK_RV w_Decrypt(CK_SESSION_HANDLE s, unsigned char *in, CK_ULONG in_len,
                       unsigned char *out, CK_ULONG *out_len)
{
	GUARD(C_Decrypt);
	return g.real->C_Decrypt(s, in, in_len, out, out_len);
}

static CK_RV w_SignInit(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE k)
{
	GUARD(C_SignInit);
	return g.real->C_SignInit(s, m, k);
}

static CK_RV w_Sign(CK_SESSION_HANDLE s, unsigned char *in, CK_ULONG in_len,
                    unsigned char *sig, CK_ULONG *sig_len)
{
	GUARD(C_Sign);
	return g.real->C_Sign(s, in, in_len, sig, sig_len);
}

static CK_RV w_GenerateKey(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_ATTRIBUTE *t, CK_ULONG n,
                           CK_OBJECT_HANDLE *k)
{
	GUARD(C_GenerateKey);
	return g.real->C_GenerateKey(s, m, t, n, k);
}

static CK_RV w_GenerateKeyPair(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_ATTRIBUTE *pub,
                               CK_ULONG n_pub, CK_ATTRIBUTE *priv, CK_ULONG n_priv,
                               CK_OBJECT_HANDLE *pub_key, CK_OBJECT_HANDLE *priv_key)
{
	GUARD(C_GenerateKeyPair);
	return g.real->C_GenerateKeyPair(s, m, pub, n_pub, priv, n_priv, pub_key, priv_key);
}

static CK_RV w_WrapKey(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE wrapping,
                       CK_OBJECT_HANDLE key, unsigned char *out, CK_ULONG *out_len)
{
	GUARD(C_WrapKey);
	return g.real->C_WrapKey(s, m, wrapping, key, out, out_len);
}

static CK_RV w_UnwrapKey(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE unwrapping,
                         unsigned char *in, CK_ULONG in_len, CK_ATTRIBUTE *t, CK_ULONG n,
                         CK_OBJECT_HANDLE *k)
{
	GUARD(C_UnwrapKey);
	return g.real->C_UnwrapKey(s, m, unwrapping, in, in_len, t, n, k);
}

static CK_RV w_GenerateRandom(CK_SESSION_HANDLE s, unsigned char *out, CK_ULONG len)
{
	GUARD(C_GenerateRandom);
	return g.real->C_GenerateRandom(s, out, len);
}

/* Loads the real module once and builds the wrapped list from its own. */
static CK_RV load_real(void)
{
	if (g.real)
		return CKR_OK;
	const char *path = getenv("P11FAULT_MODULE");
	if (!path || !path[0])
		path = "/usr/lib/softhsm/libsofthsm2.so";
	g.dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!g.dl) {
		fprintf(stderr, "p11fault: cannot load %s: %s\n", path, dlerror());
		return CKR_GENERAL_ERROR;
	}
	CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(g.dl, "C_GetFunctionList");
	CK_FUNCTION_LIST *real = NULL;
	if (!get || get(&real) != CKR_OK || !real) {
		fprintf(stderr, "p11fault: %s has no function list\n", path);
		return CKR_GENERAL_ERROR;
	}
	g.real = real;
	wrapped = *real; /* every call not listed below goes straight through */
	wrapped.C_Initialize = w_Initialize;
	wrapped.C_Finalize = w_Finalize;
	wrapped.C_GetInfo = w_GetInfo;
	wrapped.C_GetSlotList = w_GetSlotList;
	wrapped.C_GetSlotInfo = w_GetSlotInfo;
	wrapped.C_GetTokenInfo = w_GetTokenInfo;
	wrapped.C_GetMechanismList = w_GetMechanismList;
	wrapped.C_GetMechanismInfo = w_GetMechanismInfo;
	wrapped.C_OpenSession = w_OpenSession;
	wrapped.C_CloseSession = w_CloseSession;
	wrapped.C_CloseAllSessions = w_CloseAllSessions;
	wrapped.C_GetSessionInfo = w_GetSessionInfo;
	wrapped.C_Login = w_Login;
	wrapped.C_Logout = w_Logout;
	wrapped.C_CreateObject = w_CreateObject;
	wrapped.C_DestroyObject = w_DestroyObject;
	wrapped.C_GetAttributeValue = w_GetAttributeValue;
	wrapped.C_FindObjectsInit = w_FindObjectsInit;
	wrapped.C_FindObjects = w_FindObjects;
	wrapped.C_FindObjectsFinal = w_FindObjectsFinal;
	wrapped.C_EncryptInit = w_EncryptInit;
	wrapped.C_Encrypt = w_Encrypt;
	wrapped.C_DecryptInit = w_DecryptInit;
	wrapped.C_Decrypt = w_Decrypt;
	wrapped.C_SignInit = w_SignInit;
	wrapped.C_Sign = w_Sign;
	wrapped.C_GenerateKey = w_GenerateKey;
	wrapped.C_GenerateKeyPair = w_GenerateKeyPair;
	wrapped.C_WrapKey = w_WrapKey;
	wrapped.C_UnwrapKey = w_UnwrapKey;
	wrapped.C_GenerateRandom = w_GenerateRandom;
	wrapped.C_GetFunctionList = C_GetFunctionList;
	return CKR_OK;
}

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST **out)
{
	if (!out)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&g.lock);
	CK_RV rv = load_real();
	pthread_mutex_unlock(&g.lock);
	if (rv != CKR_OK)
		return rv;
	*out = &wrapped;
	return CKR_OK;
}
