/*
 * cli.c: table-driven dispatch, usage, shared options, connecting and
 * reporting errors, for kms-admin and kms.
 */
#include "clients/cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kms/secmem.h>

/* ---- usage ---- */

const char cli_conn_help[] =
	"Connection (commands that talk to kmsd):\n"
	"  --endpoint URL        kmsd's address, repeatable: ipc://PATH or\n"
	"                        tls+tcp://HOST:PORT (default: $" CLI_ENV_ENDPOINT ",\n"
	"                        comma-separated, else " KMS_CLIENT_DEFAULT_ENDPOINT ")\n"
	"  --ca FILE             CA that signed kmsd's certificate ($" CLI_ENV_TLS_CA ")\n"
	"  --cert FILE           this client's certificate, PEM ($" CLI_ENV_TLS_CERT ")\n"
	"  --cert-key FILE       its private key, PEM ($" CLI_ENV_TLS_KEY ")\n"
	"  --server-name NAME    name to expect in kmsd's certificate (default: the\n"
	"                        URL's host; $" CLI_ENV_TLS_SERVER_NAME ")\n"
	"  --credentials FILE    sign requests with the access key in FILE, a\n"
	"                        credentials file of mode 0600 ($" CLI_ENV_CREDENTIALS ")\n"
	"  --access-key-id ID    or sign with this access key ($" CLI_ENV_ACCESS_KEY_ID ")\n"
	"  --secret-file FILE    and its secret: 64 hex digits, mode 0600\n"
	"                        ($" CLI_ENV_SECRET_FILE "). Give one form, not both; a flag\n"
	"                        wins over the environment, and without either\n"
	"                        requests go unsigned\n"
	"  --timeout MS          give up after MS milliseconds (default 5000;\n"
	"                        $" CLI_ENV_TIMEOUT ")\n"
	"  --insecure-plain-tcp  allow tcp:// (development only)\n"
	"  --server-uid UID      the uid kmsd runs as: an ipc:// socket owned by, or\n"
	"                        served by, a uid other than root, this user or UID\n"
	"                        is refused before anything is sent ($" CLI_ENV_SERVER_UID ")\n";

static const char exit_help[] =
	"Exit status: 0 done, 1 kmsd said no, 2 usage error, 3 cannot reach kmsd,\n"
	"4 (kms verify, verify-mac) it does not verify.\n"
	"With --json, an error is one JSON object on stderr: {\"error\": {\"status\":\n"
	"\"NOT_FOUND\", \"message\": \"...\", \"exit_code\": 1}} (status: kmsd's, or\n"
	"REFUSED, USAGE, UNREACHABLE by exit status).\n";

/* Width of the widest command path under table, prefix included. */
static size_t widest(const struct cli_command *table, size_t prefix)
{
	size_t w = 0;
	for (const struct cli_command *c = table; c->name; c++) {
		size_t here = prefix + strlen(c->name);
		size_t sub = c->sub ? widest(c->sub, here + 1) : here;
		if (sub > w)
			w = sub;
	}
	return w;
}

static void list_commands(FILE *to, const struct cli_command *table, const char *prefix,
                          size_t width)
{
	for (const struct cli_command *c = table; c->name; c++) {
		char path[128];
		snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? " " : "", c->name);
		if (c->sub)
			list_commands(to, c->sub, path, width);
		else
			fprintf(to, "  %-*s  %s\n", (int)width, path, c->help);
	}
}

static bool any_remote(const struct cli_command *table)
{
	for (const struct cli_command *c = table; c->name; c++)
		if (c->sub ? any_remote(c->sub) : !c->local)
			return true;
	return false;
}

void cli_usage(struct cli *cli, FILE *to)
{
	const struct cli_command *cmd = cli->cmd;
	if (!cmd || cmd->sub) {
		const struct cli_command *table = cmd ? cmd->sub : cli->root;
		fprintf(to, "usage: %s [--json] [CONNECTION] COMMAND [ARGS]\n", cli->path);
		if (!cmd && cli->about)
			fprintf(to, "%s\n", cli->about);
		else if (cmd)
			fprintf(to, "%s\n", cmd->help);
		fprintf(to, "\nCommands:\n");
		list_commands(to, table, "", widest(table, 0));
		fprintf(to, "\n  --json                JSON output (every command)\n");
		if (!cmd)
			fprintf(to, "  --version             print %s's version and exit\n", cli->prog);
		fputc('\n', to);
		if (any_remote(table))
			fprintf(to, "%s\n", cli_conn_help);
		fprintf(to, "%sRun '%s COMMAND --help' for a command's options.\n",
		        exit_help, cli->path);
		return;
	}
	fprintf(to, "usage: %s%s%s\n%s\n", cli->path, cmd->args ? " " : "",
	        cmd->args ? cmd->args : "", cmd->help);
	if (cmd->details)
		fprintf(to, "\n%s", cmd->details);
	fprintf(to, "\n  --json                JSON output\n");
	if (!cmd->local)
		fprintf(to, "\n%s", cli_conn_help);
	fprintf(to, "\n%s", exit_help);
}

int cli_usage_error(struct cli *cli, const char *fmt, ...)
{
	va_list ap;
	fprintf(cli->err, "%s: ", cli->path);
	va_start(ap, fmt);
	vfprintf(cli->err, fmt, ap);
	va_end(ap);
	fprintf(cli->err, " (see %s --help)\n", cli->path);
	return CLI_EXIT_USAGE;
}

/* ---- options ---- */

/* (uid_t)-1 means "no change" to the kernel: never a process's uid. */
#define CLI_UID_MAX 4294967294u

int cli_common_option(struct cli *cli, int opt, const char *arg)
{
	struct cli_conn *conn = &cli->conn;
	uint32_t ms;

	switch (opt) {
	case CLI_OPT_JSON:
		cli->json = true;
		return 0;
	case CLI_OPT_ENDPOINT:
		if (conn->n_endpoints >= KMS_CLIENT_MAX_ENDPOINTS) {
			cli_usage_error(cli, "at most %d endpoints", KMS_CLIENT_MAX_ENDPOINTS);
			return -1;
		}
		conn->endpoints[conn->n_endpoints++] = arg;
		return 0;
	case CLI_OPT_CA:
		conn->tls_ca = arg;
		return 0;
	case CLI_OPT_CERT:
		conn->tls_cert = arg;
		return 0;
	case CLI_OPT_CERT_KEY:
		conn->tls_key = arg;
		return 0;
	case CLI_OPT_SERVER_NAME:
		conn->tls_server_name = arg;
		return 0;
	case CLI_OPT_TIMEOUT:
		if (!cli_parse_u32(arg, 1, 3600 * 1000, &ms)) {
			cli_usage_error(cli, "--timeout takes milliseconds, 1..3600000");
			return -1;
		}
		conn->timeout_ms = (int)ms;
		return 0;
	case CLI_OPT_INSECURE_TCP:
		conn->insecure_plain_tcp = true;
		return 0;
	case CLI_OPT_ACCESS_KEY_ID:
		conn->access_key_id = arg;
		return 0;
	case CLI_OPT_SECRET_FILE:
		conn->secret_file = arg;
		return 0;
	case CLI_OPT_CREDENTIALS:
		conn->credentials = arg;
		return 0;
	case CLI_OPT_SERVER_UID:
		if (!cli_parse_u32(arg, 0, CLI_UID_MAX, &conn->server_uid)) {
			cli_usage_error(cli, "--server-uid takes a uid, 0..%u", CLI_UID_MAX);
			return -1;
		}
		conn->has_server_uid = true;
		return 0;
	default:
		cli_usage_error(cli, "option not handled");
		return -1;
	}
}

static int getopt_with(struct cli *cli, int argc, char **argv, const struct option *opts,
                       const char *optstring)
{
	for (;;) {
		int opt = getopt_long(argc, argv, optstring, opts, NULL);
		switch (opt) {
		case -1:
			return CLI_GETOPT_DONE;
		case 'h':
			cli_usage(cli, cli->out);
			return CLI_GETOPT_HELP;
		case CLI_OPT_VERSION:
			fprintf(cli->out, "%s %s\n", cli->prog, KMS_VERSION);
			return CLI_GETOPT_HELP;
		case '?':
			/* A letter not offered: inside a cluster (-xyz) optind stays
			 * on the cluster, so argv[optind - 1] is the argument before
			 * it (perhaps a value): name the letter. A letter offered
			 * comes back only from its long form given a value. */
			if (optopt > ' ' && optopt < 0x7f &&
			    (optopt == ':' || !strchr(optstring, optopt)))
				cli_usage_error(cli, "unknown option -%c", optopt);
			else
				cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
			return CLI_GETOPT_BAD;
		case ':':
			cli_usage_error(cli, "option %s needs a value", argv[optind - 1]);
			return CLI_GETOPT_BAD;
		default:
			if (opt >= CLI_OPT_ENDPOINT && opt < CLI_OPT_COMMAND) {
				if (cli_common_option(cli, opt, optarg) != 0)
					return CLI_GETOPT_BAD;
				continue;
			}
			return opt;
		}
	}
}

int cli_getopt(struct cli *cli, int argc, char **argv, const struct option *opts)
{
	/* A command's one-letter options (-i for --in) are the entries whose
	 * value is an ASCII letter: the short option string is made from
	 * them, so a table says each option once. */
	char shorts[64] = ":h";
	size_t n = 2;
	for (const struct option *o = opts; o->name; o++) {
		bool letter = (o->val >= 'a' && o->val <= 'z') || (o->val >= 'A' && o->val <= 'Z');
		if (o->flag || !letter || o->val == 'h' || memchr(shorts, o->val, n))
			continue;
		if (n + 4 > sizeof shorts)
			break; /* more letters than any command has: the rest are long only */
		shorts[n++] = (char)o->val;
		if (o->has_arg != no_argument)
			shorts[n++] = ':';
		if (o->has_arg == optional_argument)
			shorts[n++] = ':';
	}
	shorts[n] = '\0';
	return getopt_with(cli, argc, argv, opts, shorts);
}

int cli_getopt_exit(int result)
{
	return result == CLI_GETOPT_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
}

bool cli_positionals(struct cli *cli, int argc, char **argv, int min, int max)
{
	int n = argc - optind;
	if (n < min) {
		cli_usage_error(cli, "missing argument%s", min - n > 1 ? "s" : "");
		return false;
	}
	if (n > max) {
		fprintf(cli->err, "%s: unexpected argument \"", cli->path);
		cli_put_clean(cli->err, argv[optind + max]);
		fprintf(cli->err, "\" (see %s --help)\n", cli->path);
		return false;
	}
	return true;
}

int cli_getopt_end(struct cli *cli, int opt, int argc, char **argv, int min, int max)
{
	if (opt != CLI_GETOPT_DONE)
		return cli_getopt_exit(opt);
	if (!cli_positionals(cli, argc, argv, min, max))
		return CLI_EXIT_USAGE;
	return CLI_PROCEED;
}

int cli_parse_args(struct cli *cli, int argc, char **argv, int min, int max)
{
	static const struct option remote[] = { CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 } };
	static const struct option local[] = { CLI_BASE_OPTIONS, { 0 } };
	int opt = cli_getopt(cli, argc, argv, cli->cmd && cli->cmd->local ? local : remote);
	if (opt >= 0)
		return cli_usage_error(cli, "option not handled");
	return cli_getopt_end(cli, opt, argc, argv, min, max);
}

/* ---- dispatch ---- */

static void path_append(struct cli *cli, const char *name)
{
	size_t used = strlen(cli->path);
	snprintf(cli->path + used, sizeof cli->path - used, " %s", name);
}

/* node is NULL at the top. argv[0] is the node's name (or the program's). */
static int run_node(struct cli *cli, const struct cli_command *node, int argc, char **argv)
{
	static const struct option opts[] = { CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 } };
	static const struct option top[] = {
		{ "version", no_argument, NULL, CLI_OPT_VERSION },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	const struct cli_command *table = node ? node->sub : cli->root;
	int r;

	cli->cmd = node;
	optind = 0; /* glibc: start over */
	/* "+": stop at the command name; the rest is the command's. */
	r = getopt_with(cli, argc, argv, node ? opts : top, "+:h");
	if (r != CLI_GETOPT_DONE)
		return cli_getopt_exit(r);
	if (optind >= argc) {
		cli_usage(cli, cli->err);
		return CLI_EXIT_USAGE;
	}
	const char *name = argv[optind];
	const struct cli_command *c = table;
	while (c->name && strcmp(c->name, name) != 0)
		c++;
	if (!c->name) {
		fprintf(cli->err, "%s: unknown command \"", cli->path);
		cli_put_clean(cli->err, name);
		fprintf(cli->err, "\" (see %s --help)\n", cli->path);
		return CLI_EXIT_USAGE;
	}
	path_append(cli, c->name);
	argc -= optind;
	argv += optind;
	if (c->sub)
		return run_node(cli, c, argc, argv);
	cli->cmd = c;
	optind = 0;
	int code = c->run(cli, argc, argv);
	if (code < CLI_EXIT_OK || code > CLI_EXIT_INVALID) {
		/* A command bug; say so rather than exit with a stray status. */
		fprintf(cli->err, "%s: internal error: exit code %d\n", cli->path, code);
		code = CLI_EXIT_UNREACHABLE;
	}
	return code;
}

/* --json anywhere among the options (before "--"): errors become JSON. */
static bool wants_json(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--json") == 0)
			return true;
	return false;
}

static const char *status_by_exit(int code)
{
	switch (code) {
	case CLI_EXIT_REFUSED:
		return "REFUSED";
	case CLI_EXIT_USAGE:
		return "USAGE";
	case CLI_EXIT_INVALID:
		return "INVALID";
	default:
		return "UNREACHABLE";
	}
}

/* Writes what a --json run said on stderr as one JSON object on one line
 * (cli_main's comment in cli.h has the shape). */
static void json_stderr(const struct cli *cli, FILE *to, int code, char *text, size_t len)
{
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		text[--len] = '\0';
	if (code == CLI_EXIT_OK && len == 0)
		return;
	json_t *message = cli_json_str(text);
	json_t *j = NULL;
	if (code != CLI_EXIT_OK)
		j = json_pack("{s:{s:s, s:o, s:i}}", "error", "status",
		              cli->err_status ? cli->err_status : status_by_exit(code),
		              "message", message, "exit_code", code);
	else
		j = json_pack("{s:{s:o}}", "warning", "message", message);
	/* json_dumpf: jansson's own allocator may be the wiping one
	 * (cli_json_wipe_on_free), so nothing it returns is freed here. */
	if (j && cli_json_dump(j, to, JSON_COMPACT) == 0)
		fputc('\n', to);
	else /* out of memory: still one JSON object */
		fprintf(to, "{\"error\":{\"status\":\"UNREACHABLE\",\"message\":\"out of "
		        "memory\",\"exit_code\":%d}}\n", code ? code : CLI_EXIT_UNREACHABLE);
	json_decref(j);
}

int cli_main(const char *prog, const char *about, const struct cli_command *root,
             int argc, char **argv, FILE *out, FILE *err)
{
	struct cli cli;
	char *err_text = NULL;
	size_t err_len = 0;
	FILE *err_to = err ? err : stderr;

	memset(&cli, 0, sizeof cli);
	cli.prog = prog;
	cli.about = about;
	cli.root = root;
	cli.out = out ? out : stdout;
	cli.err = err_to;
	if (wants_json(argc, argv)) {
		FILE *buffer = open_memstream(&err_text, &err_len);
		if (buffer)
			cli.err = buffer; /* else: plain text, as without --json */
	}
	snprintf(cli.path, sizeof cli.path, "%s", prog);
	opterr = 0; /* cli_getopt says what went wrong, naming the command */
	int code = run_node(&cli, NULL, argc, argv);
	free(cli.conn.env_endpoints);
	if (fflush(cli.out) != 0 && code == CLI_EXIT_OK) {
		fprintf(cli.err, "%s: cannot write the output: %s\n", prog, strerror(errno));
		code = CLI_EXIT_UNREACHABLE;
	}
	if (cli.err != err_to) {
		bool ok = fclose(cli.err) == 0;
		if (ok && err_text)
			json_stderr(&cli, err_to, code, err_text, err_len);
		else if (code != CLI_EXIT_OK)
			json_stderr(&cli, err_to, code, (char[]){ "" }, 0);
		free(err_text);
		fflush(err_to);
	}
	return code;
}

/* ---- connecting ---- */

static const char *env_or(const char *value, const char *name)
{
	if (value)
		return value;
	const char *env = getenv(name);
	return env && env[0] ? env : NULL;
}

static int hex_digit(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* The access key secret: 64 hex digits (and a newline) in a file only its
 * owner may read, like the HSM PIN. Never echoed, in part or whole. */
static int load_secret(struct cli *cli, const char *path,
                       uint8_t secret[KMS_SIGN_SECRET_LEN])
{
	enum { TEXT_MAX = 2 * KMS_SIGN_SECRET_LEN + 8 };
	struct stat st;
	int code = CLI_EXIT_USAGE;
	char *text = kms_secure_alloc(TEXT_MAX);
	if (!text)
		return cli_out_of_secure_memory(cli);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st) != 0) {
		fprintf(cli->err, "%s: secret file %s: %s\n", cli->prog, path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || (st.st_mode & 077) != 0) {
		fprintf(cli->err, "%s: secret file %s must be a regular file only its owner "
		        "can read (chmod 600)\n", cli->prog, path);
		goto out;
	}
	ssize_t n = read(fd, text, TEXT_MAX);
	size_t len = n > 0 ? (size_t)n : 0;
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' ||
	                   text[len - 1] == ' ' || text[len - 1] == '\t'))
		len--;
	bool ok = n > 0 && (size_t)n < TEXT_MAX && len == 2 * KMS_SIGN_SECRET_LEN;
	for (size_t i = 0; ok && i < KMS_SIGN_SECRET_LEN; i++) {
		int hi = hex_digit(text[2 * i]), lo = hex_digit(text[2 * i + 1]);
		ok = hi >= 0 && lo >= 0;
		secret[i] = ok ? (uint8_t)(hi << 4 | lo) : 0;
	}
	if (!ok) {
		kms_wipe(secret, KMS_SIGN_SECRET_LEN);
		fprintf(cli->err, "%s: secret file %s does not hold 64 hex digits\n",
		        cli->prog, path);
		goto out;
	}
	code = CLI_EXIT_OK;
out:
	if (fd >= 0)
		close(fd);
	kms_secure_free(text);
	return code;
}

/* Endpoints from $KMS_ENDPOINT: comma-separated, spaces around ignored. */
static int env_endpoints(struct cli *cli)
{
	struct cli_conn *conn = &cli->conn;
	const char *env = getenv(CLI_ENV_ENDPOINT);
	if (!env || !env[0])
		return CLI_EXIT_OK;
	free(conn->env_endpoints);
	conn->env_endpoints = strdup(env);
	if (!conn->env_endpoints)
		return cli_out_of_memory(cli);
	char *save = NULL;
	for (char *tok = strtok_r(conn->env_endpoints, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ' || *tok == '\t')
			tok++;
		size_t len = strlen(tok);
		while (len > 0 && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
			tok[--len] = '\0';
		if (!len)
			continue;
		if (conn->n_endpoints >= KMS_CLIENT_MAX_ENDPOINTS)
			return cli_usage_error(cli, "$%s: at most %d endpoints",
			                       CLI_ENV_ENDPOINT, KMS_CLIENT_MAX_ENDPOINTS);
		conn->endpoints[conn->n_endpoints++] = tok;
	}
	return CLI_EXIT_OK;
}

int cli_connect(struct cli *cli, kms_client **out)
{
	struct cli_conn *conn = &cli->conn;
	kms_client_options opts;
	kms_error err;
	uint8_t *secret = NULL;
	int code;

	*out = NULL;
	memset(&opts, 0, sizeof opts);
	if (conn->n_endpoints == 0 && (code = env_endpoints(cli)) != CLI_EXIT_OK)
		return code;
	opts.endpoints = conn->endpoints;
	opts.n_endpoints = conn->n_endpoints; /* 0: the library's default */
	opts.timeout_ms = conn->timeout_ms;
	const char *env_timeout = getenv(CLI_ENV_TIMEOUT);
	if (!opts.timeout_ms && env_timeout && env_timeout[0]) {
		uint32_t ms;
		if (!cli_parse_u32(env_timeout, 1, 3600 * 1000, &ms))
			return cli_usage_error(cli, "$%s takes milliseconds, 1..3600000",
			                       CLI_ENV_TIMEOUT);
		opts.timeout_ms = (int)ms;
	}
	opts.tls_ca_file = env_or(conn->tls_ca, CLI_ENV_TLS_CA);
	opts.tls_cert_file = env_or(conn->tls_cert, CLI_ENV_TLS_CERT);
	opts.tls_key_file = env_or(conn->tls_key, CLI_ENV_TLS_KEY);
	opts.tls_server_name = env_or(conn->tls_server_name, CLI_ENV_TLS_SERVER_NAME);
	opts.insecure_plain_tcp = conn->insecure_plain_tcp;
	opts.server_uid = conn->server_uid;
	const char *env_uid = getenv(CLI_ENV_SERVER_UID);
	if (!conn->has_server_uid && env_uid && env_uid[0] &&
	    !cli_parse_u32(env_uid, 0, CLI_UID_MAX, &opts.server_uid))
		return cli_usage_error(cli, "$%s takes a uid, 0..%u", CLI_ENV_SERVER_UID,
		                       CLI_UID_MAX);
	/* Two forms: --credentials, or --access-key-id with --secret-file.
	 * Flags first; the environment only when no flag of either form. */
	bool key_flags = conn->access_key_id || conn->secret_file;
	if (key_flags && conn->credentials)
		return cli_usage_error(cli, "give --credentials or --access-key-id with "
		                       "--secret-file, not both");
	const char *credentials = conn->credentials;
	if (!key_flags && !credentials) {
		const char *env_creds = env_or(NULL, CLI_ENV_CREDENTIALS);
		bool env_key = env_or(NULL, CLI_ENV_ACCESS_KEY_ID) || env_or(NULL, CLI_ENV_SECRET_FILE);
		if (env_creds && env_key)
			return cli_usage_error(cli, "$%s and $%s/$%s are both set; unset one "
			                       "form or give a flag", CLI_ENV_CREDENTIALS,
			                       CLI_ENV_ACCESS_KEY_ID, CLI_ENV_SECRET_FILE);
		credentials = env_creds;
	}
	opts.credentials_file = credentials;
	opts.no_env_credentials = true; /* decided here */
	opts.access_key_id = credentials ? NULL : env_or(conn->access_key_id, CLI_ENV_ACCESS_KEY_ID);
	const char *secret_file = credentials ? NULL : env_or(conn->secret_file, CLI_ENV_SECRET_FILE);
	if (!opts.access_key_id != !secret_file)
		return cli_usage_error(cli, "an access key needs both --access-key-id "
		                       "and --secret-file");
	if (secret_file) {
		secret = kms_secure_alloc(KMS_SIGN_SECRET_LEN);
		if (!secret)
			return cli_out_of_secure_memory(cli);
		if ((code = load_secret(cli, secret_file, secret)) != CLI_EXIT_OK) {
			kms_secure_free(secret);
			return code;
		}
		opts.access_key_secret = secret;
	}
	kms_status st = kms_client_open(&opts, out, &err);
	kms_secure_free(secret); /* the client keeps its own copy */
	if (st != KMS_OK)
		return cli_report(cli, &err);
	return CLI_EXIT_OK;
}

int cli_parse_and_connect(struct cli *cli, int argc, char **argv, int min, int max,
                          kms_client **client)
{
	*client = NULL;
	int code = cli_parse_args(cli, argc, argv, min, max);
	if (code != CLI_PROCEED)
		return code;
	if ((code = cli_connect(cli, client)) != CLI_EXIT_OK)
		return code;
	return CLI_PROCEED;
}

int cli_report(struct cli *cli, const kms_error *err)
{
	return cli_report_hint(cli, err, NULL);
}

int cli_report_hint(struct cli *cli, const kms_error *err, const char *hint)
{
	int code;
	cli->err_status = kms_status_name(err->status);
	switch (err->origin) {
	case KMS_ERROR_SERVER:
		fprintf(cli->err, "%s: %s: ", cli->prog, kms_status_name(err->status));
		cli_put_clean(cli->err, err->message); /* kmsd's words: untrusted */
		code = CLI_EXIT_REFUSED;
		break;
	case KMS_ERROR_LOCAL:
		/* The library's words; an envelope message's context keys come
		 * from the file, so they are cleaned too. */
		fprintf(cli->err, "%s: ", cli->prog);
		cli_put_clean(cli->err, err->message);
		/* Refused here for what the caller gave: arguments, or input
		 * that is not a valid message. */
		code = err->status == KMS_INVALID_ARGUMENT || err->status == KMS_INVALID_CIPHERTEXT
		               ? CLI_EXIT_USAGE
		               : CLI_EXIT_UNREACHABLE;
		break;
	case KMS_ERROR_TRANSPORT:
	case KMS_ERROR_PROTOCOL:
	case KMS_ERROR_NONE:
	default:
		fprintf(cli->err, "%s: ", cli->prog);
		cli_put_clean(cli->err, err->message[0] ? err->message
		                                        : kms_status_name(err->status));
		code = CLI_EXIT_UNREACHABLE;
		break;
	}
	if (hint)
		fprintf(cli->err, "%s", hint);
	fputc('\n', cli->err);
	return code;
}

int cli_out_of_memory(struct cli *cli)
{
	fprintf(cli->err, "%s: out of memory\n", cli->prog);
	return CLI_EXIT_UNREACHABLE;
}

int cli_out_of_secure_memory(struct cli *cli)
{
	fprintf(cli->err, "%s: out of secure memory\n", cli->prog);
	return CLI_EXIT_UNREACHABLE;
}
