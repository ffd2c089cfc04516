/*
 * admin_audit_prove.c: kms-admin audit key and prove: what
 * kmsd says about its log, checked here. kmsd's checkpoint must verify
 * (with the pinned key, or the one kmsd sends, said so), and every proof
 * it sends must lead to that signed root; an older tree's root is only
 * believed once a consistency proof shows it is a prefix of the signed one.
 */
#include "clients/cli/admin_audit.h"

#include <string.h>

#include "common/error.h"

_Static_assert(KMS_HASH_LEN == TLOG_HASH_SIZE, "kmsd's proof hashes are tlog hashes");

/* ---- talking to kmsd: a checkpoint that verified ---- */

struct signed_head {
	kms_checkpoint raw;
	char vkey[TLOG_VERIFIER_KEY_MAX];
	tlog_verifier key;
	bool key_from_kmsd; /* not pinned by the user: trust on first use */
	tlog_checkpoint cp; /* points into raw.checkpoint */
};

/* Asks kmsd for its checkpoint and verifies it: with the pinned key when
 * there is one, else with the key kmsd sends along (and says so). */
static int fetch_head(struct cli *cli, kms_client *client, const char *pinned_vkey,
                      const tlog_verifier *pinned, bool warn, struct signed_head *out)
{
	tlog_note_view view;
	kms_error err;

	memset(out, 0, sizeof *out);
	if (kms_get_checkpoint(client, &out->raw, &err) != KMS_OK)
		return cli_report(cli, &err);
	if (pinned) {
		out->key = *pinned;
		snprintf(out->vkey, sizeof out->vkey, "%s", pinned_vkey);
	} else {
		out->key_from_kmsd = true;
		if (strlen(out->raw.verifier_key) >= sizeof out->vkey ||
		    tlog_verifier_key_parse(out->raw.verifier_key, &out->key) != KMS_OK) {
			fprintf(cli->err, "%s: kmsd sent a verifier key that does not parse: ",
			        cli->prog);
			cli_put_clean(cli->err, kms_error_message());
			fputc('\n', cli->err);
			return CLI_EXIT_UNREACHABLE;
		}
		snprintf(out->vkey, sizeof out->vkey, "%s", out->raw.verifier_key);
		if (warn) {
			fprintf(cli->err, "%s: note: checking with the key kmsd sent (", cli->path);
			cli_put_clean(cli->err, out->vkey);
			fprintf(cli->err, "); pin the key you trust with --key\n");
		}
	}
	const char *note = out->raw.checkpoint;
	const char *what = "kmsd's checkpoint";
	if (tlog_note_verify(note, strlen(note), &out->key, what, &view) != KMS_OK ||
	    tlog_checkpoint_parse(view.body, view.body_len, what, &out->cp) != KMS_OK)
		return admin_audit_failed(cli, "%s", kms_error_message());
	if (out->cp.tree_size != out->raw.tree_size ||
	    !tlog_hash_equal(out->cp.root, out->raw.root_hash))
		return admin_audit_failed(cli, "kmsd's answer (size %" PRIu64 ") disagrees with "
		                          "the checkpoint it signed (size %" PRIu64 ")",
		                          out->raw.tree_size, out->cp.tree_size);
	return CLI_EXIT_OK;
}

static void signed_head_free(struct signed_head *h)
{
	kms_checkpoint_free(&h->raw);
	memset(h, 0, sizeof *h);
}

/* An inclusion proof from kmsd for (index, tree_size); its index and size
 * must be the ones asked for. */
static int fetch_inclusion(struct cli *cli, kms_client *client, uint64_t index,
                           uint64_t tree_size, kms_inclusion_proof *out)
{
	kms_error err;
	if (kms_get_inclusion_proof(client, index, tree_size, out, &err) != KMS_OK)
		return cli_report(cli, &err);
	if (out->index != index || out->tree_size != tree_size || !out->entry) {
		fprintf(cli->err, "%s: kmsd answered with entry %" PRIu64 " of %" PRIu64
		        " when asked for entry %" PRIu64 " of %" PRIu64 "\n", cli->prog,
		        out->index, out->tree_size, index, tree_size);
		kms_inclusion_proof_free(out);
		return CLI_EXIT_UNREACHABLE;
	}
	return CLI_EXIT_OK;
}

static int fetch_consistency(struct cli *cli, kms_client *client, uint64_t old_size,
                             uint64_t new_size, kms_consistency_proof *out)
{
	kms_error err;
	if (kms_get_consistency_proof(client, old_size, new_size, out, &err) != KMS_OK)
		return cli_report(cli, &err);
	if (out->old_size != old_size || out->new_size != new_size) {
		fprintf(cli->err, "%s: kmsd answered with a proof from %" PRIu64 " to %" PRIu64
		        " when asked for one from %" PRIu64 " to %" PRIu64 "\n", cli->prog,
		        out->old_size, out->new_size, old_size, new_size);
		kms_consistency_proof_free(out);
		return CLI_EXIT_UNREACHABLE;
	}
	return CLI_EXIT_OK;
}

/* Checks, with a consistency proof from kmsd, that the tree (size, root)
 * is a prefix of the signed head. The proof is kept in *proof when not
 * NULL (the caller frees it). */
static int check_prefix_of_head(struct cli *cli, kms_client *client,
                                const struct signed_head *head, uint64_t size,
                                const uint8_t root[static TLOG_HASH_SIZE],
                                kms_consistency_proof *proof)
{
	kms_consistency_proof local;
	kms_consistency_proof *p = proof ? proof : &local;
	int code = fetch_consistency(cli, client, size, head->cp.tree_size, p);
	if (code != CLI_EXIT_OK)
		return code;
	if (tlog_consistency_verify(size, head->cp.tree_size, root, head->cp.root,
	                            (admin_audit_hashes)p->hashes, p->n_hashes) != KMS_OK)
		code = admin_audit_failed(cli, "the tree of %" PRIu64 " is not a prefix of the "
		                          "signed checkpoint (size %" PRIu64 "): the consistency "
		                          "proof does not verify", size, head->cp.tree_size);
	if (!proof || code != CLI_EXIT_OK)
		kms_consistency_proof_free(p);
	return code;
}

/* ---- audit key ---- */

int admin_audit_key_cmd(struct cli *cli, int argc, char **argv)
{
	struct signed_head head;
	kms_client *client = NULL;
	int code = cli_parse_and_connect(cli, argc, argv, 0, 0, &client);
	if (code != CLI_PROCEED)
		return code;
	/* The key kmsd sends must at least verify the checkpoint it sends. */
	code = fetch_head(cli, client, NULL, NULL, false, &head);
	kms_client_close(client);
	if (code == CLI_EXIT_REFUSED)
		code = CLI_EXIT_UNREACHABLE; /* not a valid answer, not a refusal */
	if (code == CLI_EXIT_OK) {
		if (cli->json)
			code = cli_json_print(cli, json_pack("{s:o}", "verifier_key",
			                                     cli_json_str(head.vkey)));
		else
			fprintf(cli->out, "%s\n", head.vkey);
	}
	signed_head_free(&head);
	return code;
}

/* ---- audit prove ---- */

static void print_head(struct cli *cli, const struct signed_head *head)
{
	char hex[ADMIN_AUDIT_HEX_SIZE];
	cli_field_fmt(cli->out, "checkpoint", "%.*s, size %" PRIu64, (int)head->cp.origin_len,
	              head->cp.origin, head->cp.tree_size);
	cli_field(cli->out, "", admin_audit_hex(head->cp.root, hex));
	cli_field_fmt(cli->out, "verifier key", "%s (%s)", head->vkey,
	              head->key_from_kmsd ? "sent by kmsd" : "pinned");
}

static json_t *json_head(const struct signed_head *head)
{
	char origin[TLOG_ORIGIN_MAX + 1];
	snprintf(origin, sizeof origin, "%.*s", (int)head->cp.origin_len, head->cp.origin);
	return json_pack("{s:o, s:I, s:o, s:o, s:s}", "origin", cli_json_str(origin),
	                 "tree_size", (json_int_t)head->cp.tree_size, "root",
	                 admin_audit_json_hex(head->cp.root), "verifier_key",
	                 cli_json_str(head->vkey),
	                 "key_from", head->key_from_kmsd ? "kmsd" : "pinned");
}

/* prove N [--tree-size S] */
static int prove_inclusion(struct cli *cli, kms_client *client, const struct signed_head *head,
                           uint64_t index, uint64_t tree_size)
{
	kms_inclusion_proof p;
	kms_consistency_proof c = { 0 };
	uint8_t leaf[TLOG_HASH_SIZE], root[TLOG_HASH_SIZE];
	char hex[ADMIN_AUDIT_HEX_SIZE];
	int code;

	if (tree_size == 0)
		tree_size = head->cp.tree_size;
	if (tree_size > head->cp.tree_size)
		return cli_usage_error(cli, "--tree-size %" PRIu64 " is past kmsd's signed "
		                       "checkpoint (size %" PRIu64 ")", tree_size,
		                       head->cp.tree_size);
	if (index >= tree_size)
		return cli_usage_error(cli, "no entry %" PRIu64 " in a tree of %" PRIu64,
		                       index, tree_size);
	if ((code = fetch_inclusion(cli, client, index, tree_size, &p)) != CLI_EXIT_OK)
		return code;
	if (tlog_leaf_hash(p.entry, p.entry_len, leaf) != KMS_OK) {
		code = cli_out_of_memory(cli);
		goto out;
	}
	if (tree_size == head->cp.tree_size) {
		memcpy(root, head->cp.root, TLOG_HASH_SIZE);
	} else if (tlog_inclusion_root(leaf, index, tree_size, (admin_audit_hashes)p.hashes,
	                               p.n_hashes, root) != KMS_OK) {
		code = admin_audit_failed(cli, "entry %" PRIu64 ": %s", index, kms_error_message());
		goto out;
	}
	if (tlog_inclusion_verify(leaf, index, tree_size, (admin_audit_hashes)p.hashes,
	                          p.n_hashes, root) != KMS_OK) {
		code = admin_audit_failed(cli, "entry %" PRIu64 ": the inclusion proof does not "
		                          "verify against the signed root of size %" PRIu64, index,
		                          tree_size);
		goto out;
	}
	/* An older tree: its root is what the proof says, so it must be a
	 * prefix of what kmsd signed. */
	if (tree_size != head->cp.tree_size &&
	    (code = check_prefix_of_head(cli, client, head, tree_size, root, &c)) != CLI_EXIT_OK)
		goto out;

	if (cli->json) {
		json_t *doc = json_pack("{s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:b}",
		                        "index", (json_int_t)index,
		                        "tree_size", (json_int_t)tree_size,
		                        "leaf_hash", admin_audit_json_hex(leaf),
		                        "proof",
		                        admin_audit_json_hashes((admin_audit_hashes)p.hashes,
		                                                p.n_hashes),
		                        "root", admin_audit_json_hex(root),
		                        "consistency_proof",
		                        tree_size != head->cp.tree_size
		                                ? admin_audit_json_hashes(
		                                          (admin_audit_hashes)c.hashes, c.n_hashes)
		                                : json_null(),
		                        "checkpoint", json_head(head),
		                        "entry", admin_audit_entry_value(p.entry, p.entry_len),
		                        "verified", 1);
		code = cli_json_print(cli, doc);
		goto out;
	}
	cli_field_fmt(cli->out, "entry", "%" PRIu64, index);
	cli_field_fmt(cli->out, "tree size", "%" PRIu64, tree_size);
	cli_field(cli->out, "leaf hash", admin_audit_hex(leaf, hex));
	admin_audit_print_hashes(cli->out, "inclusion proof", (admin_audit_hashes)p.hashes,
	                         p.n_hashes, "(none: the tree is this one entry)");
	cli_field(cli->out, "root", admin_audit_hex(root, hex));
	if (tree_size != head->cp.tree_size)
		admin_audit_print_hashes(cli->out, "consistency proof",
		                         (admin_audit_hashes)c.hashes, c.n_hashes, "(none)");
	print_head(cli, head);
	if ((code = admin_audit_print_entry(cli, p.entry, p.entry_len)) != CLI_EXIT_OK)
		goto out;
	fprintf(cli->out, "verified: entry %" PRIu64 " is in the tree of %" PRIu64
	        " entries%s\n", index, tree_size,
	        tree_size != head->cp.tree_size ? ", a prefix of the signed checkpoint"
	                                        : " that kmsd signed");
out:
	kms_inclusion_proof_free(&p);
	kms_consistency_proof_free(&c);
	return code;
}

/* Reads and verifies an older checkpoint of the same log. */
static int read_old_checkpoint(struct cli *cli, const char *path, const struct signed_head *head,
                               char **note, tlog_checkpoint *out)
{
	tlog_note_view view;
	size_t len;
	int code;
	code = admin_audit_read_note_file(cli, "--old-checkpoint", path, note, &len);
	if (code != CLI_EXIT_OK)
		return code;
	if (tlog_note_verify(*note, len, &head->key, "old checkpoint", &view) != KMS_OK ||
	    tlog_checkpoint_parse(view.body, view.body_len, "old checkpoint", out) != KMS_OK)
		return admin_audit_failed(cli, "%s", kms_error_message());
	if (out->origin_len != head->cp.origin_len ||
	    memcmp(out->origin, head->cp.origin, out->origin_len) != 0)
		return admin_audit_failed(cli, "old checkpoint is for origin %.*s, kmsd's log is "
		                          "%.*s", (int)out->origin_len, out->origin,
		                          (int)head->cp.origin_len, head->cp.origin);
	return CLI_EXIT_OK;
}

/* The root of kmsd's tree at size (1..head's size), from an inclusion
 * proof of its last entry: what kmsd claims, to be checked by the caller
 * with a consistency proof against a root it trusts. */
static int claimed_root(struct cli *cli, kms_client *client, uint64_t size,
                        uint8_t root[static TLOG_HASH_SIZE])
{
	kms_inclusion_proof p;
	uint8_t leaf[TLOG_HASH_SIZE];
	int code = fetch_inclusion(cli, client, size - 1, size, &p);
	if (code != CLI_EXIT_OK)
		return code;
	if (tlog_leaf_hash(p.entry, p.entry_len, leaf) != KMS_OK ||
	    tlog_inclusion_root(leaf, size - 1, size, (admin_audit_hashes)p.hashes, p.n_hashes,
	                        root) != KMS_OK)
		code = admin_audit_failed(cli, "entry %" PRIu64 ": %s", size - 1,
		                          kms_error_message());
	kms_inclusion_proof_free(&p);
	return code;
}

/* prove --consistency OLD [--new-size S] [--old-checkpoint FILE] */
static int prove_consistency(struct cli *cli, kms_client *client, const struct signed_head *head,
                             uint64_t old_size, uint64_t new_size, const char *old_file)
{
	kms_consistency_proof c = { 0 };
	tlog_checkpoint old_cp;
	uint8_t old_root[TLOG_HASH_SIZE], new_root[TLOG_HASH_SIZE];
	char hex[ADMIN_AUDIT_HEX_SIZE];
	char *old_note = NULL;
	const char *old_from, *old_from_code;
	int code;

	if (new_size == 0)
		new_size = head->cp.tree_size;
	if (new_size > head->cp.tree_size)
		return cli_usage_error(cli, "--new-size %" PRIu64 " is past kmsd's signed "
		                       "checkpoint (size %" PRIu64 ")", new_size,
		                       head->cp.tree_size);
	if (old_size > new_size)
		return cli_usage_error(cli, "--consistency %" PRIu64 " is past the new size %"
		                       PRIu64, old_size, new_size);

	/* The new root: signed, or an older one shown to be a prefix of it. */
	if (new_size == head->cp.tree_size) {
		memcpy(new_root, head->cp.root, TLOG_HASH_SIZE);
	} else if ((code = claimed_root(cli, client, new_size, new_root)) != CLI_EXIT_OK ||
	           (code = check_prefix_of_head(cli, client, head, new_size, new_root, NULL)) !=
	                   CLI_EXIT_OK) {
		goto out;
	}

	/* The old root: from a checkpoint the user kept (the real check), else
	 * what kmsd's own proofs give, for the user to compare. */
	if (old_file) {
		if ((code = read_old_checkpoint(cli, old_file, head, &old_note, &old_cp)) !=
		    CLI_EXIT_OK)
			goto out;
		if (old_cp.tree_size != old_size) {
			code = cli_usage_error(cli, "--old-checkpoint is of size %" PRIu64
			                       ", not %" PRIu64, old_cp.tree_size, old_size);
			goto out;
		}
		memcpy(old_root, old_cp.root, TLOG_HASH_SIZE);
		old_from = "the old checkpoint, signed";
		old_from_code = "old_checkpoint";
	} else if (old_size == 0) {
		tlog_empty_root(old_root);
		old_from = "the empty tree";
		old_from_code = "empty_tree";
	} else if (old_size == new_size) {
		memcpy(old_root, new_root, TLOG_HASH_SIZE);
		old_from = "the new tree";
		old_from_code = "new_tree";
	} else {
		if ((code = claimed_root(cli, client, old_size, old_root)) != CLI_EXIT_OK)
			goto out;
		old_from = "kmsd's proofs: compare it with a checkpoint you kept, or pass "
		           "--old-checkpoint";
		old_from_code = "kmsd";
	}

	if ((code = fetch_consistency(cli, client, old_size, new_size, &c)) != CLI_EXIT_OK)
		goto out;
	if (tlog_consistency_verify(old_size, new_size, old_root, new_root,
	                            (admin_audit_hashes)c.hashes, c.n_hashes) != KMS_OK) {
		code = admin_audit_failed(cli, "the consistency proof from %" PRIu64 " to %" PRIu64
		                          " does not verify: the log of %" PRIu64 " entries is not "
		                          "a prefix of the log of %" PRIu64, old_size, new_size,
		                          old_size, new_size);
		goto out;
	}

	if (cli->json) {
		json_t *doc = json_pack("{s:I, s:I, s:o, s:s, s:o, s:o, s:o, s:b}",
		                        "old_size", (json_int_t)old_size,
		                        "new_size", (json_int_t)new_size,
		                        "old_root", admin_audit_json_hex(old_root),
		                        "old_root_from", old_from_code,
		                        "new_root", admin_audit_json_hex(new_root),
		                        "proof",
		                        admin_audit_json_hashes((admin_audit_hashes)c.hashes,
		                                                c.n_hashes),
		                        "checkpoint", json_head(head), "verified", 1);
		code = cli_json_print(cli, doc);
		goto out;
	}
	cli_field_fmt(cli->out, "old size", "%" PRIu64, old_size);
	cli_field(cli->out, "old root", admin_audit_hex(old_root, hex));
	cli_field_fmt(cli->out, "", "(from %s)", old_from);
	cli_field_fmt(cli->out, "new size", "%" PRIu64, new_size);
	cli_field(cli->out, "new root", admin_audit_hex(new_root, hex));
	admin_audit_print_hashes(cli->out, "consistency proof", (admin_audit_hashes)c.hashes,
	                         c.n_hashes, "(none: nothing to prove between these sizes)");
	print_head(cli, head);
	fprintf(cli->out, "verified: the log of %" PRIu64 " entries is a prefix of the log of %"
	        PRIu64 "\n", old_size, new_size);
	code = CLI_EXIT_OK;
out:
	free(old_note);
	kms_consistency_proof_free(&c);
	return code;
}

int admin_audit_prove(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		AUDIT_KEY_OPTIONS,
		{ "tree-size", required_argument, NULL, AUDIT_OPT_TREE_SIZE },
		{ "consistency", required_argument, NULL, AUDIT_OPT_CONSISTENCY },
		{ "new-size", required_argument, NULL, AUDIT_OPT_NEW_SIZE },
		{ "old-checkpoint", required_argument, NULL, AUDIT_OPT_OLD_CHECKPOINT },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	const char *old_file = NULL;
	struct admin_audit_key vk = { 0 };
	struct signed_head head;
	kms_client *client = NULL;
	uint64_t tree_size = 0, new_size = 0, old_size = 0, index = 0;
	bool consistency = false;
	int opt, code;

	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		if (admin_audit_key_option(opt, &vk))
			continue;
		switch (opt) {
		case AUDIT_OPT_TREE_SIZE:
			if (!admin_audit_parse_u64(optarg, TLOG_TREE_SIZE_MAX, &tree_size) ||
			    tree_size == 0)
				return cli_usage_error(cli, "--tree-size takes 1 or more");
			break;
		case AUDIT_OPT_NEW_SIZE:
			if (!admin_audit_parse_u64(optarg, TLOG_TREE_SIZE_MAX, &new_size) ||
			    new_size == 0)
				return cli_usage_error(cli, "--new-size takes 1 or more");
			break;
		case AUDIT_OPT_CONSISTENCY:
			if (!admin_audit_parse_u64(optarg, TLOG_TREE_SIZE_MAX, &old_size))
				return cli_usage_error(cli, "--consistency takes a tree size");
			consistency = true;
			break;
		case AUDIT_OPT_OLD_CHECKPOINT:
			old_file = optarg;
			break;
		default:
			return cli_usage_error(cli, "option not handled");
		}
	}
	if (opt != CLI_GETOPT_DONE)
		return cli_getopt_exit(opt);
	if (consistency) {
		if (tree_size)
			return cli_usage_error(cli, "--tree-size is for an inclusion proof; "
			                       "with --consistency, give --new-size");
		if (!cli_positionals(cli, argc, argv, 0, 0))
			return CLI_EXIT_USAGE;
	} else {
		if (new_size || old_file)
			return cli_usage_error(cli, "--new-size and --old-checkpoint go with "
			                       "--consistency");
		if (!cli_positionals(cli, argc, argv, 1, 1))
			return CLI_EXIT_USAGE;
		if (!admin_audit_parse_u64(argv[optind], TLOG_TREE_SIZE_MAX - 1, &index))
			return cli_usage_error(cli, "N is an entry number, 0 or more");
	}
	if ((code = admin_audit_resolve_key(cli, &vk)) != CLI_EXIT_OK)
		return code;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	code = fetch_head(cli, client, vk.text, admin_audit_given_key(&vk), true, &head);
	if (code == CLI_EXIT_OK)
		code = consistency
		               ? prove_consistency(cli, client, &head, old_size, new_size, old_file)
		               : prove_inclusion(cli, client, &head, index, tree_size);
	signed_head_free(&head);
	kms_client_close(client);
	return code;
}
