/*
 * RFC 6962 hashing, proofs and the in-memory tree against known answers
 * and against a naive implementation of the RFC's definitions.
 *
 * Known answers: the eight leaves of the Certificate Transparency test
 * data, their node hashes and roots (github.com/transparency-dev/merkle,
 * testonly/constants.go) and its inclusion and consistency proofs
 * (proof/verify_test.go).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/tlog/tlog_merkle.h"
#include "tests/support/tlog_test_util.h"

#define CT_LEAVES 8

static const struct {
	const char *bytes;
	size_t len;
} ct_leaves[CT_LEAVES] = {
	{ "", 0 },
	{ "\x00", 1 },
	{ "\x10", 1 },
	{ "\x20\x21", 2 },
	{ "\x30\x31", 2 },
	{ "\x40\x41\x42\x43", 4 },
	{ "\x50\x51\x52\x53\x54\x55\x56\x57", 8 },
	{ "\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f", 16 },
};

/* Roots of the trees of the first n leaves, n = 0..8. */
static const char *const ct_roots[CT_LEAVES + 1] = {
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
	"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
	"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
	"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
	"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
	"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
	"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
	"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

/* Complete subtree hashes by level (level 0: the leaf hashes). */
static const char *const ct_nodes[4][CT_LEAVES] = {
	{ "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
	  "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
	  "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
	  "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
	  "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
	  "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
	  "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
	  "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1" },
	{ "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
	  "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
	  "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
	  "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0" },
	{ "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
	  "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4" },
	{ "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328" },
};

typedef struct proof_vector {
	uint64_t a, b; /* inclusion: index, size; consistency: old, new */
	size_t n;
	const char *hashes[3];
} proof_vector;

static const proof_vector ct_inclusion[] = {
	{ 0, 8, 3, { "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
	             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
	             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4" } },
	{ 5, 8, 3, { "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
	             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
	             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7" } },
	{ 2, 3, 1, { "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125" } },
	{ 1, 5, 3, { "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
	             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
	             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b" } },
	{ 0, 1, 0, { NULL } },
};

static const proof_vector ct_consistency[] = {
	{ 1, 1, 0, { NULL } },
	{ 1, 8, 3, { "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
	             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
	             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4" } },
	{ 6, 8, 3, { "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
	             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
	             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7" } },
	{ 2, 5, 2, { "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
	             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b" } },
	{ 6, 7, 3, { "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
	             "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
	             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7" } },
};

typedef uint8_t hash_t[TLOG_HASH_SIZE];

/* The CT leaves' hashes, through tlog_leaf_hash. */
static void ct_leaf_hashes(hash_t leaves[CT_LEAVES])
{
	for (int i = 0; i < CT_LEAVES; i++)
		assert_int_equal(tlog_leaf_hash((const uint8_t *)ct_leaves[i].bytes, ct_leaves[i].len,
		                                leaves[i]),
		                 KMS_OK);
}

static void ct_tree(tlog_tree *tree)
{
	hash_t leaves[CT_LEAVES];
	ct_leaf_hashes(leaves);
	tlog_tree_init(tree);
	for (int i = 0; i < CT_LEAVES; i++)
		assert_int_equal(tlog_tree_append(tree, leaves[i]), KMS_OK);
}

static void assert_hex(const uint8_t *hash, const char *hex)
{
	hash_t want;
	test_hex32(hex, want);
	assert_memory_equal(hash, want, TLOG_HASH_SIZE);
}

/* A reader that counts reads, over a tlog_tree. */
typedef struct counting {
	tlog_tree *tree;
	unsigned reads;
} counting;

static kms_status counting_reader(void *ctx, unsigned level, uint64_t index,
                                  uint8_t out[static TLOG_HASH_SIZE])
{
	counting *c = ctx;
	c->reads++;
	return tlog_tree_reader(c->tree, level, index, out);
}

static void empty_root_is_sha256_of_nothing(void **state)
{
	hash_t root, sha;
	tlog_empty_root(root);
	test_sha256("", 0, sha);
	assert_memory_equal(root, sha, TLOG_HASH_SIZE);
	assert_int_equal(tlog_root(NULL, 0, root), KMS_OK);
	assert_memory_equal(root, sha, TLOG_HASH_SIZE);
	tlog_tree tree;
	tlog_tree_init(&tree);
	assert_int_equal(tlog_tree_root(&tree, 0, root), KMS_OK);
	assert_memory_equal(root, sha, TLOG_HASH_SIZE);
	assert_int_equal(tlog_tree_root(&tree, 1, root), KMS_INVALID_ARGUMENT);
	tlog_tree_free(&tree);
}

static void ct_node_hashes_and_roots(void **state)
{
	hash_t leaves[CT_LEAVES], root;
	tlog_tree tree;
	ct_leaf_hashes(leaves);
	ct_tree(&tree);
	/* Every complete subtree the tree keeps is the published one. */
	for (unsigned level = 0; level < 4; level++)
		for (uint64_t i = 0; i < (uint64_t)(CT_LEAVES >> level); i++) {
			assert_int_equal(tlog_tree_reader(&tree, level, i, root), KMS_OK);
			assert_hex(root, ct_nodes[level][i]);
		}
	assert_int_equal(tlog_tree_reader(&tree, 3, 1, root), KMS_NOT_FOUND);
	assert_int_equal(tlog_tree_reader(&tree, 0, 8, root), KMS_NOT_FOUND);

	for (uint64_t n = 0; n <= CT_LEAVES; n++) {
		assert_int_equal(tlog_root((const hash_t *)leaves, n, root), KMS_OK);
		assert_hex(root, ct_roots[n]);
		assert_int_equal(tlog_tree_root(&tree, n, root), KMS_OK);
		assert_hex(root, ct_roots[n]);
		naive_mth((const hash_t *)leaves, 0, n, root);
		assert_hex(root, ct_roots[n]);
	}
	/* A tree grown leaf by leaf has the same roots on the way. */
	tlog_tree grown;
	tlog_tree_init(&grown);
	for (uint64_t n = 1; n <= CT_LEAVES; n++) {
		assert_int_equal(tlog_tree_append_entry(&grown, (const uint8_t *)ct_leaves[n - 1].bytes,
		                                        ct_leaves[n - 1].len),
		                 KMS_OK);
		assert_int_equal(tlog_tree_size(&grown), n);
		assert_int_equal(tlog_tree_root(&grown, n, root), KMS_OK);
		assert_hex(root, ct_roots[n]);
	}
	tlog_tree_free(&grown);
	tlog_tree_free(&tree);
}

static void node_hash_may_alias(void **state)
{
	hash_t a, b, want;
	test_hex32(ct_nodes[0][0], a);
	test_hex32(ct_nodes[0][1], b);
	assert_int_equal(tlog_node_hash(a, b, a), KMS_OK);
	assert_hex(a, ct_nodes[1][0]);
	test_hex32(ct_nodes[0][0], a);
	assert_int_equal(tlog_node_hash(a, b, b), KMS_OK);
	test_hex32(ct_nodes[1][0], want);
	assert_memory_equal(b, want, TLOG_HASH_SIZE);
}

static void ct_known_proofs(void **state)
{
	tlog_tree tree;
	hash_t leaves[CT_LEAVES], proof[TLOG_PROOF_MAX_HASHES], root, old_root;
	size_t n;
	ct_leaf_hashes(leaves);
	ct_tree(&tree);

	for (size_t v = 0; v < sizeof ct_inclusion / sizeof ct_inclusion[0]; v++) {
		const proof_vector *pv = &ct_inclusion[v];
		assert_int_equal(tlog_inclusion_proof(tlog_tree_reader, &tree, pv->b, pv->a, proof, &n),
		                 KMS_OK);
		assert_int_equal(n, pv->n);
		for (size_t i = 0; i < n; i++)
			assert_hex(proof[i], pv->hashes[i]);
		test_hex32(ct_roots[pv->b], root);
		assert_int_equal(tlog_inclusion_verify(leaves[pv->a], pv->a, pv->b,
		                                       (const hash_t *)proof, n, root),
		                 KMS_OK);
	}
	for (size_t v = 0; v < sizeof ct_consistency / sizeof ct_consistency[0]; v++) {
		const proof_vector *pv = &ct_consistency[v];
		assert_int_equal(tlog_consistency_proof(tlog_tree_reader, &tree, pv->a, pv->b, proof,
		                                        &n),
		                 KMS_OK);
		assert_int_equal(n, pv->n);
		for (size_t i = 0; i < n; i++)
			assert_hex(proof[i], pv->hashes[i]);
		test_hex32(ct_roots[pv->a], old_root);
		test_hex32(ct_roots[pv->b], root);
		assert_int_equal(tlog_consistency_verify(pv->a, pv->b, old_root, root,
		                                         (const hash_t *)proof, n),
		                 KMS_OK);
	}
	tlog_tree_free(&tree);
}

/* Every way of spoiling a good proof fails. (Tree sizes are only halved or
 * doubled: a root does not commit to its tree's size, and RFC 9162's
 * algorithms accept a proof for a nearby size of the same shape, e.g. leaf
 * 0 of 4 as leaf 0 of 3. The signed checkpoint binds size and root.) */
static void assert_inclusion_tamper_fails(const hash_t leaf, uint64_t index, uint64_t size,
                                          hash_t *proof, size_t n, const hash_t root)
{
	hash_t bad[TLOG_PROOF_MAX_HASHES + 1], other;
	test_hex32("abacaba000000000000000000000000000000000000000000060061e00123456", other);

	if (index > 0)
		assert_int_equal(tlog_inclusion_verify(leaf, index - 1, size, (const hash_t *)proof, n, root),
		                 KMS_INVALID_CIPHERTEXT);
	assert_int_equal(tlog_inclusion_verify(leaf, index + 1, size, (const hash_t *)proof, n, root),
	                 KMS_INVALID_CIPHERTEXT);
	if ((index ^ 2) != index && (index ^ 2) < size)
		assert_int_not_equal(tlog_inclusion_verify(leaf, index ^ 2, size, (const hash_t *)proof,
		                                           n, root),
		                     KMS_OK);
	assert_int_not_equal(tlog_inclusion_verify(leaf, index, size * 2, (const hash_t *)proof, n,
	                                           root),
	                     KMS_OK);
	if (size / 2 > index && n > 0)
		assert_int_not_equal(tlog_inclusion_verify(leaf, index, size / 2,
		                                           (const hash_t *)proof, n, root),
		                     KMS_OK);
	assert_int_equal(tlog_inclusion_verify(other, index, size, (const hash_t *)proof, n, root),
	                 KMS_INVALID_CIPHERTEXT);
	assert_int_equal(tlog_inclusion_verify(leaf, index, size, (const hash_t *)proof, n, other),
	                 KMS_INVALID_CIPHERTEXT);
	for (size_t i = 0; i < n; i++) {
		memcpy(bad, proof, n * TLOG_HASH_SIZE);
		bad[i][0] ^= 8;
		assert_int_equal(tlog_inclusion_verify(leaf, index, size, (const hash_t *)bad, n, root),
		                 KMS_INVALID_CIPHERTEXT);
	}
	if (n > 0)
		assert_int_equal(tlog_inclusion_verify(leaf, index, size, (const hash_t *)proof, n - 1,
		                                       root),
		                 KMS_INVALID_CIPHERTEXT);
	/* Trailing and preceding extra hashes. */
	memcpy(bad, proof, n * TLOG_HASH_SIZE);
	memcpy(bad[n], root, TLOG_HASH_SIZE);
	assert_int_equal(tlog_inclusion_verify(leaf, index, size, (const hash_t *)bad, n + 1, root),
	                 KMS_INVALID_CIPHERTEXT);
	memcpy(bad[0], root, TLOG_HASH_SIZE);
	memcpy(bad + 1, proof, n * TLOG_HASH_SIZE);
	assert_int_equal(tlog_inclusion_verify(leaf, index, size, (const hash_t *)bad, n + 1, root),
	                 KMS_INVALID_CIPHERTEXT);
}

static void assert_consistency_tamper_fails(uint64_t m, uint64_t size, const hash_t old_root,
                                            const hash_t root, hash_t *proof, size_t n)
{
	hash_t bad[TLOG_PROOF_MAX_HASHES + 1];
	if (n == 0)
		return;
	assert_int_not_equal(tlog_consistency_verify(m - 1, size, old_root, root,
	                                             (const hash_t *)proof, n),
	                     KMS_OK);
	assert_int_not_equal(tlog_consistency_verify(m + 1, size, old_root, root,
	                                             (const hash_t *)proof, n),
	                     KMS_OK);
	assert_int_not_equal(tlog_consistency_verify(m, size * 2, old_root, root,
	                                             (const hash_t *)proof, n),
	                     KMS_OK);
	assert_int_equal(tlog_consistency_verify(m, size, root, old_root, (const hash_t *)proof, n),
	                 KMS_INVALID_CIPHERTEXT);
	assert_int_equal(tlog_consistency_verify(m, size, old_root, root, NULL, 0),
	                 KMS_INVALID_CIPHERTEXT);
	for (size_t i = 0; i < n; i++) {
		memcpy(bad, proof, n * TLOG_HASH_SIZE);
		bad[i][0] ^= 16;
		assert_int_equal(tlog_consistency_verify(m, size, old_root, root, (const hash_t *)bad, n),
		                 KMS_INVALID_CIPHERTEXT);
	}
	assert_int_equal(tlog_consistency_verify(m, size, old_root, root, (const hash_t *)proof,
	                                         n - 1),
	                 KMS_INVALID_CIPHERTEXT);
	memcpy(bad, proof, n * TLOG_HASH_SIZE);
	memcpy(bad[n], old_root, TLOG_HASH_SIZE);
	assert_int_equal(tlog_consistency_verify(m, size, old_root, root, (const hash_t *)bad, n + 1),
	                 KMS_INVALID_CIPHERTEXT);
	memcpy(bad[0], proof[0], TLOG_HASH_SIZE);
	memcpy(bad + 1, proof, n * TLOG_HASH_SIZE);
	assert_int_equal(tlog_consistency_verify(m, size, old_root, root, (const hash_t *)bad, n + 1),
	                 KMS_INVALID_CIPHERTEXT);
}

/* For a tree of `size` leaves, every inclusion proof and every consistency
 * proof (or those of the listed indices and sizes) equal the naive ones
 * and verify, and their spoiled variants do not. */
static void check_all_proofs(const hash_t *leaves, uint64_t size, const uint64_t *which,
                             size_t which_n)
{
	tlog_tree tree;
	hash_t proof[TLOG_PROOF_MAX_HASHES], naive[TLOG_PROOF_MAX_HASHES], root, old_root;
	size_t n;
	tlog_tree_init(&tree);
	for (uint64_t i = 0; i < size; i++)
		assert_int_equal(tlog_tree_append(&tree, leaves[i]), KMS_OK);
	assert_int_equal(tlog_tree_root(&tree, size, root), KMS_OK);

	size_t count = which ? which_n : size;
	for (size_t j = 0; j < count; j++) {
		uint64_t index = which ? which[j] : j;
		if (index >= size)
			continue;
		assert_int_equal(tlog_inclusion_proof(tlog_tree_reader, &tree, size, index, proof, &n),
		                 KMS_OK);
		size_t naive_n = naive_path(leaves, index, 0, size, naive);
		assert_int_equal(n, naive_n);
		assert_memory_equal(proof, naive, n * TLOG_HASH_SIZE);
		assert_int_equal(tlog_inclusion_verify(leaves[index], index, size,
		                                       (const hash_t *)proof, n, root),
		                 KMS_OK);
		assert_inclusion_tamper_fails(leaves[index], index, size, proof, n, root);
	}
	for (size_t j = 0; j <= count; j++) {
		uint64_t m = which ? (j < which_n ? which[j] : size) : j;
		if (m > size)
			continue;
		assert_int_equal(tlog_consistency_proof(tlog_tree_reader, &tree, m, size, proof, &n),
		                 KMS_OK);
		size_t naive_n = naive_proof(leaves, m, size, naive);
		assert_int_equal(n, naive_n);
		assert_memory_equal(proof, naive, n * TLOG_HASH_SIZE);
		assert_int_equal(tlog_tree_root(&tree, m, old_root), KMS_OK);
		assert_int_equal(tlog_consistency_verify(m, size, old_root, root,
		                                         (const hash_t *)proof, n),
		                 KMS_OK);
		if (m > 0 && m < size)
			assert_consistency_tamper_fails(m, size, old_root, root, proof, n);
	}
	tlog_tree_free(&tree);
}

static void all_proofs_up_to_eight(void **state)
{
	hash_t leaves[CT_LEAVES];
	ct_leaf_hashes(leaves);
	for (uint64_t size = 1; size <= CT_LEAVES; size++)
		check_all_proofs((const hash_t *)leaves, size, NULL, 0);
}

static void all_proofs_up_to_seventy(void **state)
{
	uint8_t (*many)[TLOG_HASH_SIZE] = test_leaf_hashes(70);
	for (uint64_t size = 1; size <= 70; size++)
		check_all_proofs((const hash_t *)many, size, NULL, 0);
	free(many);
}

/* The root a proof leads to, for a tree whose root is not known yet: for
 * every leaf of trees up to 70 it is the tree's root, and a proof one hash
 * short or long, or a leaf outside the tree, is refused. */
static void inclusion_root_is_the_trees_root(void **state)
{
	uint8_t (*many)[TLOG_HASH_SIZE] = test_leaf_hashes(70);
	hash_t proof[TLOG_PROOF_MAX_HASHES + 1], want, got;
	for (uint64_t size = 1; size <= 70; size++) {
		naive_mth((const hash_t *)many, 0, size, want);
		for (uint64_t index = 0; index < size; index++) {
			size_t n = naive_path((const hash_t *)many, index, 0, size, proof);
			assert_int_equal(tlog_inclusion_root(many[index], index, size,
			                                     (const hash_t *)proof, n, got),
			                 KMS_OK);
			assert_memory_equal(got, want, TLOG_HASH_SIZE);
			assert_true(tlog_hash_equal(got, want));
			memcpy(proof[n], want, TLOG_HASH_SIZE);
			assert_int_equal(tlog_inclusion_root(many[index], index, size,
			                                     (const hash_t *)proof, n + 1, got),
			                 KMS_INVALID_CIPHERTEXT);
			assert_non_null(strstr(kms_error_message(), "is too many"));
			if (n > 0) {
				assert_int_equal(tlog_inclusion_root(many[index], index, size,
				                                     (const hash_t *)proof, n - 1, got),
				                 KMS_INVALID_CIPHERTEXT);
				assert_non_null(strstr(kms_error_message(), "is too few"));
			}
		}
		assert_int_equal(tlog_inclusion_root(many[0], size, size, (const hash_t *)proof, 0,
		                                     got),
		                 KMS_INVALID_CIPHERTEXT);
	}
	memcpy(got, want, TLOG_HASH_SIZE);
	got[TLOG_HASH_SIZE - 1] ^= 1;
	assert_false(tlog_hash_equal(got, want));
	free(many);
}

static void verify_edge_cases(void **state)
{
	hash_t empty, a, b, leaf, proof[1];
	tlog_empty_root(empty);
	test_hex32(ct_roots[1], a);
	test_hex32(ct_roots[2], b);
	memcpy(leaf, a, TLOG_HASH_SIZE);
	/* Inclusion: nothing is in the empty tree; index must be < size. */
	assert_int_equal(tlog_inclusion_verify(leaf, 0, 0, NULL, 0, empty), KMS_INVALID_CIPHERTEXT);
	assert_int_equal(tlog_inclusion_verify(leaf, 1, 1, NULL, 0, leaf), KMS_INVALID_CIPHERTEXT);
	assert_int_equal(tlog_inclusion_verify(leaf, 0, 1, NULL, 0, leaf), KMS_OK);
	assert_int_equal(tlog_inclusion_verify(leaf, 0, 1, NULL, 0, b), KMS_INVALID_CIPHERTEXT);
	/* Consistency: the trivial cases need an empty proof. */
	assert_int_equal(tlog_consistency_verify(0, 0, empty, empty, NULL, 0), KMS_OK);
	assert_int_equal(tlog_consistency_verify(0, 5, empty, b, NULL, 0), KMS_OK);
	assert_int_equal(tlog_consistency_verify(0, 5, a, b, NULL, 0), KMS_INVALID_CIPHERTEXT);
	memcpy(proof[0], empty, TLOG_HASH_SIZE);
	assert_int_equal(tlog_consistency_verify(0, 1, empty, a, (const hash_t *)proof, 1),
	                 KMS_INVALID_CIPHERTEXT);
	assert_int_equal(tlog_consistency_verify(1, 1, a, a, NULL, 0), KMS_OK);
	assert_int_equal(tlog_consistency_verify(1, 1, a, b, NULL, 0), KMS_INVALID_CIPHERTEXT);
	assert_int_equal(tlog_consistency_verify(1, 1, a, a, (const hash_t *)proof, 1),
	                 KMS_INVALID_CIPHERTEXT);
	assert_int_equal(tlog_consistency_verify(2, 1, a, b, NULL, 0), KMS_INVALID_CIPHERTEXT);
	assert_int_equal(tlog_consistency_verify(1, 2, a, b, NULL, 0), KMS_INVALID_CIPHERTEXT);
	/* Proof generation refuses what does not exist. */
	tlog_tree tree;
	hash_t out[TLOG_PROOF_MAX_HASHES];
	size_t n = 99;
	ct_tree(&tree);
	assert_int_equal(tlog_inclusion_proof(tlog_tree_reader, &tree, 8, 8, out, &n),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(n, 0);
	assert_int_equal(tlog_inclusion_proof(tlog_tree_reader, &tree, 9, 0, out, &n), KMS_NOT_FOUND);
	assert_int_equal(tlog_consistency_proof(tlog_tree_reader, &tree, 5, 4, out, &n),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(tlog_consistency_proof(tlog_tree_reader, &tree, 0, 8, out, &n), KMS_OK);
	assert_int_equal(n, 0);
	tlog_tree_free(&tree);
}

/* Large trees: the tree, the O(n) root and the naive recursion agree;
 * proofs for a spread of indices and sizes match the naive ones; proof
 * generation reads O(log n) stored hashes. */
static void large_trees(void **state)
{
	static const uint64_t sizes[] = { 1000, 65537, (UINT64_C(1) << 17) + 3 };
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		uint64_t size = sizes[s];
		uint8_t (*leaves)[TLOG_HASH_SIZE] = test_leaf_hashes(size);
		hash_t a, b, c;
		tlog_tree tree;
		tlog_tree_init(&tree);
		for (uint64_t i = 0; i < size; i++)
			assert_int_equal(tlog_tree_append(&tree, leaves[i]), KMS_OK);
		assert_int_equal(tlog_tree_root(&tree, size, a), KMS_OK);
		assert_int_equal(tlog_root((const hash_t *)leaves, size, b), KMS_OK);
		naive_mth((const hash_t *)leaves, 0, size, c);
		assert_memory_equal(a, b, TLOG_HASH_SIZE);
		assert_memory_equal(a, c, TLOG_HASH_SIZE);
		/* Older roots. */
		const uint64_t older[] = { 1, 2, 3, 255, 256, 257, 511, 512, 999, size / 3, size - 1 };
		for (size_t i = 0; i < sizeof older / sizeof older[0]; i++) {
			assert_int_equal(tlog_tree_root(&tree, older[i], a), KMS_OK);
			assert_int_equal(tlog_root((const hash_t *)leaves, older[i], b), KMS_OK);
			assert_memory_equal(a, b, TLOG_HASH_SIZE);
		}
		/* Reads per proof: at most two per tree level. */
		counting cnt = { &tree, 0 };
		hash_t proof[TLOG_PROOF_MAX_HASHES];
		size_t n;
		for (size_t i = 0; i < sizeof older / sizeof older[0]; i++) {
			cnt.reads = 0;
			assert_int_equal(tlog_inclusion_proof(counting_reader, &cnt, size, older[i], proof,
			                                      &n),
			                 KMS_OK);
			assert_true(cnt.reads <= 2 * 64);
			cnt.reads = 0;
			assert_int_equal(tlog_consistency_proof(counting_reader, &cnt, older[i], size,
			                                        proof, &n),
			                 KMS_OK);
			assert_true(cnt.reads <= 2 * 64);
		}
		const uint64_t which[] = { 0, 1, 254, 255, 256, size / 2, size - 2, size - 1 };
		check_all_proofs((const hash_t *)leaves, size, which, sizeof which / sizeof which[0]);
		tlog_tree_free(&tree);
		free(leaves);
	}
}

static void arguments_are_checked(void **state)
{
	hash_t out;
	assert_int_equal(tlog_leaf_hash(NULL, 1, out), KMS_INVALID_ARGUMENT);
	assert_int_equal(tlog_leaf_hash(NULL, 0, out), KMS_OK);
	assert_hex(out, ct_nodes[0][0]);
	assert_int_equal(tlog_root(NULL, 1, out), KMS_INVALID_ARGUMENT);
	assert_int_equal(tlog_root_at(tlog_tree_reader, NULL, TLOG_TREE_SIZE_MAX + 1, out),
	                 KMS_INVALID_ARGUMENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(empty_root_is_sha256_of_nothing),
		cmocka_unit_test(ct_node_hashes_and_roots),
		cmocka_unit_test(node_hash_may_alias),
		cmocka_unit_test(ct_known_proofs),
		cmocka_unit_test(all_proofs_up_to_eight),
		cmocka_unit_test(all_proofs_up_to_seventy),
		cmocka_unit_test(inclusion_root_is_the_trees_root),
		cmocka_unit_test(verify_edge_cases),
		cmocka_unit_test(large_trees),
		cmocka_unit_test(arguments_are_checked),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
