#include "common/tlog/tlog_merkle.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "common/error.h"

#define WHERE "tlog"

/* SHA-256 of the empty string (FIPS 180-4); tests check it against OpenSSL. */
static const uint8_t empty_root[TLOG_HASH_SIZE] = {
	0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4,
	0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b,
	0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
};

#define NODE_INPUT_LEN (1 + 2 * TLOG_HASH_SIZE)

void tlog_empty_root(uint8_t out[static TLOG_HASH_SIZE])
{
	memcpy(out, empty_root, TLOG_HASH_SIZE);
}

kms_status tlog_leaf_hash(const uint8_t *entry, size_t len, uint8_t out[static TLOG_HASH_SIZE])
{
	static const uint8_t prefix = TLOG_LEAF_PREFIX;
	KMS_ENSURE(entry != NULL || len == 0, KMS_INVALID_ARGUMENT, WHERE ": leaf hash: no entry");
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int out_len = 0;
	bool ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	          EVP_DigestUpdate(md, &prefix, 1) == 1 &&
	          (len == 0 || EVP_DigestUpdate(md, entry, len) == 1) &&
	          EVP_DigestFinal_ex(md, out, &out_len) == 1 && out_len == TLOG_HASH_SIZE;
	EVP_MD_CTX_free(md);
	if (!ok) {
		ERR_clear_error();
		return KMS_FAIL(KMS_INTERNAL, WHERE ": SHA-256 of a leaf failed (OpenSSL)");
	}
	return KMS_OK;
}

kms_status tlog_node_hash(const uint8_t left[static TLOG_HASH_SIZE],
                          const uint8_t right[static TLOG_HASH_SIZE],
                          uint8_t out[static TLOG_HASH_SIZE])
{
	uint8_t input[NODE_INPUT_LEN];
	unsigned int out_len = 0;

	input[0] = TLOG_NODE_PREFIX;
	memcpy(input + 1, left, TLOG_HASH_SIZE);
	memcpy(input + 1 + TLOG_HASH_SIZE, right, TLOG_HASH_SIZE);
	/* input holds copies, so out may alias left or right. */
	if (EVP_Digest(input, sizeof input, out, &out_len, EVP_sha256(), NULL) != 1 ||
	    out_len != TLOG_HASH_SIZE) {
		ERR_clear_error();
		return KMS_FAIL(KMS_INTERNAL, WHERE ": SHA-256 of a node failed (OpenSSL)");
	}
	return KMS_OK;
}

/* floor(log2(n)), n > 0. */
static unsigned floor_log2(uint64_t n)
{
	return 63u - (unsigned)__builtin_clzll(n);
}

/* The largest power of two strictly below n, n >= 2 (RFC 6962's k). */
static uint64_t split_point(uint64_t n)
{
	return UINT64_C(1) << floor_log2(n - 1);
}

/* Folds hashes of complete subtrees, left to right with decreasing sizes,
 * into the MTH of their concatenation: node(h0, node(h1, ...)). */
static kms_status fold_right(uint8_t (*hashes)[TLOG_HASH_SIZE], unsigned n,
                             uint8_t out[static TLOG_HASH_SIZE])
{
	if (n == 0) {
		tlog_empty_root(out);
		return KMS_OK;
	}
	uint8_t acc[TLOG_HASH_SIZE];
	memcpy(acc, hashes[n - 1], TLOG_HASH_SIZE);
	for (unsigned i = n - 1; i > 0; i--)
		KMS_GUARD(tlog_node_hash(hashes[i - 1], acc, acc));
	memcpy(out, acc, TLOG_HASH_SIZE);
	return KMS_OK;
}

kms_status tlog_root(const uint8_t (*leaf_hashes)[TLOG_HASH_SIZE], uint64_t n,
                     uint8_t out[static TLOG_HASH_SIZE])
{
	KMS_ENSURE(n <= TLOG_TREE_SIZE_MAX, KMS_INVALID_ARGUMENT,
	           WHERE ": root: %llu leaves is too many", (unsigned long long)n);
	KMS_ENSURE(leaf_hashes != NULL || n == 0, KMS_INVALID_ARGUMENT,
	           WHERE ": root: no leaf hashes");
	/* The stack holds the complete subtrees of the leaves seen so far,
	 * largest first: one per set bit of the count. */
	uint8_t stack[TLOG_TREE_LEVELS][TLOG_HASH_SIZE];
	unsigned depth = 0;

	for (uint64_t i = 0; i < n; i++) {
		memcpy(stack[depth++], leaf_hashes[i], TLOG_HASH_SIZE);
		for (uint64_t count = i + 1; (count & 1) == 0; count >>= 1) {
			depth--;
			KMS_GUARD(tlog_node_hash(stack[depth - 1], stack[depth], stack[depth - 1]));
		}
	}
	return fold_right(stack, depth, out);
}

/* MTH(D[begin:end]), from complete subtrees. Every range the RFC 6962
 * recursion produces splits, left to right, into aligned complete subtrees
 * of decreasing size. */
static kms_status range_hash(tlog_hash_reader read, void *ctx, uint64_t begin, uint64_t end,
                             uint8_t out[static TLOG_HASH_SIZE])
{
	uint8_t pieces[TLOG_TREE_LEVELS][TLOG_HASH_SIZE];
	unsigned n = 0;

	for (uint64_t pos = begin; pos < end;) {
		unsigned level = floor_log2(end - pos);
		uint64_t width = UINT64_C(1) << level;
		KMS_ENSURE((pos & (width - 1)) == 0 && n < TLOG_TREE_LEVELS, KMS_INTERNAL,
		           WHERE ": range [%llu, %llu) does not split into aligned subtrees",
		           (unsigned long long)begin, (unsigned long long)end);
		KMS_GUARD(read(ctx, level, pos >> level, pieces[n]));
		n++;
		pos += width;
	}
	return fold_right(pieces, n, out);
}

kms_status tlog_root_at(tlog_hash_reader read, void *ctx, uint64_t tree_size,
                        uint8_t out[static TLOG_HASH_SIZE])
{
	KMS_ENSURE(read != NULL, KMS_INVALID_ARGUMENT, WHERE ": root: no hash reader");
	KMS_ENSURE(tree_size <= TLOG_TREE_SIZE_MAX, KMS_INVALID_ARGUMENT,
	           WHERE ": root: tree size %llu is too large", (unsigned long long)tree_size);
	return range_hash(read, ctx, 0, tree_size, out);
}

/* Proof hashes are found root side first; proofs list them leaf side first. */
static void reverse(uint8_t (*hashes)[TLOG_HASH_SIZE], size_t n)
{
	uint8_t tmp[TLOG_HASH_SIZE];
	for (size_t i = 0, j = n ? n - 1 : 0; i < j; i++, j--) {
		memcpy(tmp, hashes[i], TLOG_HASH_SIZE);
		memcpy(hashes[i], hashes[j], TLOG_HASH_SIZE);
		memcpy(hashes[j], tmp, TLOG_HASH_SIZE);
	}
}

kms_status tlog_inclusion_proof(tlog_hash_reader read, void *ctx, uint64_t tree_size,
                                uint64_t index,
                                uint8_t proof[static TLOG_PROOF_MAX_HASHES][TLOG_HASH_SIZE],
                                size_t *n)
{
	*n = 0;
	KMS_ENSURE(read != NULL, KMS_INVALID_ARGUMENT, WHERE ": inclusion proof: no hash reader");
	KMS_ENSURE(tree_size <= TLOG_TREE_SIZE_MAX && index < tree_size, KMS_INVALID_ARGUMENT,
	           WHERE ": inclusion proof: leaf %llu is not in a tree of %llu",
	           (unsigned long long)index, (unsigned long long)tree_size);

	/* PATH(m, D[lo:hi]): m < k: PATH(m, D[lo:lo+k]) : MTH(D[lo+k:hi]);
	 * otherwise PATH(m - k, D[lo+k:hi]) : MTH(D[lo:lo+k]). */
	size_t count = 0;
	uint64_t lo = 0, hi = tree_size;
	while (hi - lo > 1) {
		uint64_t k = split_point(hi - lo);
		KMS_ENSURE(count < TLOG_PROOF_MAX_HASHES, KMS_INTERNAL,
		           WHERE ": inclusion proof longer than %d hashes", TLOG_PROOF_MAX_HASHES);
		kms_status st;
		if (index - lo < k) {
			st = range_hash(read, ctx, lo + k, hi, proof[count]);
			hi = lo + k;
		} else {
			st = range_hash(read, ctx, lo, lo + k, proof[count]);
			lo = lo + k;
		}
		if (st != KMS_OK)
			return st;
		count++;
	}
	reverse(proof, count);
	*n = count;
	return KMS_OK;
}

kms_status tlog_consistency_proof(tlog_hash_reader read, void *ctx, uint64_t old_size,
                                  uint64_t new_size,
                                  uint8_t proof[static TLOG_PROOF_MAX_HASHES][TLOG_HASH_SIZE],
                                  size_t *n)
{
	*n = 0;
	KMS_ENSURE(read != NULL, KMS_INVALID_ARGUMENT, WHERE ": consistency proof: no hash reader");
	KMS_ENSURE(new_size <= TLOG_TREE_SIZE_MAX && old_size <= new_size, KMS_INVALID_ARGUMENT,
	           WHERE ": consistency proof: from size %llu to %llu",
	           (unsigned long long)old_size, (unsigned long long)new_size);
	if (old_size == 0 || old_size == new_size)
		return KMS_OK;

	/* SUBPROOF(m, D[lo:hi], b): m == hi - lo: {} if b, else {MTH(D[lo:hi])};
	 * m <= k: SUBPROOF(m, D[lo:lo+k], b) : MTH(D[lo+k:hi]);
	 * m > k: SUBPROOF(m - k, D[lo+k:hi], false) : MTH(D[lo:lo+k]).
	 * Here m is old_size - lo. */
	size_t count = 0;
	uint64_t lo = 0, hi = new_size;
	bool whole_old_tree = true;
	for (;;) {
		KMS_ENSURE(count < TLOG_PROOF_MAX_HASHES, KMS_INTERNAL,
		           WHERE ": consistency proof longer than %d hashes", TLOG_PROOF_MAX_HASHES);
		if (old_size == hi) {
			if (!whole_old_tree) {
				KMS_GUARD(range_hash(read, ctx, lo, hi, proof[count]));
				count++;
			}
			break;
		}
		uint64_t k = split_point(hi - lo);
		if (old_size - lo <= k) {
			KMS_GUARD(range_hash(read, ctx, lo + k, hi, proof[count]));
			hi = lo + k;
		} else {
			KMS_GUARD(range_hash(read, ctx, lo, lo + k, proof[count]));
			lo = lo + k;
			whole_old_tree = false;
		}
		count++;
	}
	reverse(proof, count);
	*n = count;
	return KMS_OK;
}

bool tlog_hash_equal(const uint8_t a[static TLOG_HASH_SIZE],
                     const uint8_t b[static TLOG_HASH_SIZE])
{
	return CRYPTO_memcmp(a, b, TLOG_HASH_SIZE) == 0;
}

kms_status tlog_inclusion_root(const uint8_t leaf_hash[static TLOG_HASH_SIZE], uint64_t index,
                               uint64_t tree_size, const uint8_t (*proof)[TLOG_HASH_SIZE],
                               size_t n, uint8_t root[static TLOG_HASH_SIZE])
{
	KMS_ENSURE(proof != NULL || n == 0, KMS_INVALID_ARGUMENT,
	           WHERE ": inclusion proof: no hashes");
	/* RFC 9162 2.1.3.2, step by step. */
	KMS_ENSURE(index < tree_size, KMS_INVALID_CIPHERTEXT,
	           WHERE ": inclusion proof: leaf %llu is not in a tree of %llu",
	           (unsigned long long)index, (unsigned long long)tree_size);
	uint64_t fn = index, sn = tree_size - 1;
	uint8_t r[TLOG_HASH_SIZE];
	memcpy(r, leaf_hash, TLOG_HASH_SIZE);
	for (size_t i = 0; i < n; i++) {
		KMS_ENSURE(sn != 0, KMS_INVALID_CIPHERTEXT,
		           WHERE ": inclusion proof: %zu hashes is too many", n);
		if ((fn & 1) || fn == sn) {
			KMS_GUARD(tlog_node_hash(proof[i], r, r));
			if (!(fn & 1)) {
				while (!(fn & 1) && fn != 0) {
					fn >>= 1;
					sn >>= 1;
				}
			}
		} else {
			KMS_GUARD(tlog_node_hash(r, proof[i], r));
		}
		fn >>= 1;
		sn >>= 1;
	}
	KMS_ENSURE(sn == 0, KMS_INVALID_CIPHERTEXT,
	           WHERE ": inclusion proof: %zu hashes is too few", n);
	memcpy(root, r, TLOG_HASH_SIZE);
	return KMS_OK;
}

kms_status tlog_inclusion_verify(const uint8_t leaf_hash[static TLOG_HASH_SIZE], uint64_t index,
                                 uint64_t tree_size,
                                 const uint8_t (*proof)[TLOG_HASH_SIZE], size_t n,
                                 const uint8_t root[static TLOG_HASH_SIZE])
{
	uint8_t r[TLOG_HASH_SIZE];
	KMS_GUARD(tlog_inclusion_root(leaf_hash, index, tree_size, proof, n, r));
	KMS_ENSURE(tlog_hash_equal(r, root), KMS_INVALID_CIPHERTEXT,
	           WHERE ": inclusion proof of leaf %llu does not lead to the root",
	           (unsigned long long)index);
	return KMS_OK;
}

kms_status tlog_consistency_verify(uint64_t old_size, uint64_t new_size,
                                   const uint8_t old_root[static TLOG_HASH_SIZE],
                                   const uint8_t new_root[static TLOG_HASH_SIZE],
                                   const uint8_t (*proof)[TLOG_HASH_SIZE], size_t n)
{
	KMS_ENSURE(proof != NULL || n == 0, KMS_INVALID_ARGUMENT,
	           WHERE ": consistency proof: no hashes");
	KMS_ENSURE(old_size <= new_size, KMS_INVALID_CIPHERTEXT,
	           WHERE ": consistency proof: old size %llu is larger than new size %llu",
	           (unsigned long long)old_size, (unsigned long long)new_size);
	if (old_size == 0) {
		KMS_ENSURE(n == 0, KMS_INVALID_CIPHERTEXT,
		           WHERE ": consistency proof from the empty tree must be empty");
		KMS_ENSURE(tlog_hash_equal(old_root, empty_root), KMS_INVALID_CIPHERTEXT,
		           WHERE ": consistency proof: old root is not the empty tree's");
		return KMS_OK;
	}
	if (old_size == new_size) {
		KMS_ENSURE(n == 0, KMS_INVALID_CIPHERTEXT,
		           WHERE ": consistency proof between equal sizes must be empty");
		KMS_ENSURE(tlog_hash_equal(old_root, new_root), KMS_INVALID_CIPHERTEXT,
		           WHERE ": consistency proof: roots differ at equal size %llu",
		           (unsigned long long)old_size);
		return KMS_OK;
	}

	/* RFC 9162 2.1.4.2, step by step, for 0 < old_size < new_size. */
	KMS_ENSURE(n > 0, KMS_INVALID_CIPHERTEXT, WHERE ": consistency proof is empty");
	/* Step 2: a power-of-two old tree is itself the first path element. */
	bool prepend = (old_size & (old_size - 1)) == 0;
	const uint8_t *first = prepend ? old_root : proof[0];
	size_t next = prepend ? 0 : 1;

	uint64_t fn = old_size - 1, sn = new_size - 1;
	while (fn & 1) {
		fn >>= 1;
		sn >>= 1;
	}
	uint8_t fr[TLOG_HASH_SIZE], sr[TLOG_HASH_SIZE];
	memcpy(fr, first, TLOG_HASH_SIZE);
	memcpy(sr, first, TLOG_HASH_SIZE);
	for (size_t i = next; i < n; i++) {
		KMS_ENSURE(sn != 0, KMS_INVALID_CIPHERTEXT,
		           WHERE ": consistency proof: %zu hashes is too many", n);
		if ((fn & 1) || fn == sn) {
			KMS_GUARD(tlog_node_hash(proof[i], fr, fr));
			KMS_GUARD(tlog_node_hash(proof[i], sr, sr));
			if (!(fn & 1)) {
				while (!(fn & 1) && fn != 0) {
					fn >>= 1;
					sn >>= 1;
				}
			}
		} else {
			KMS_GUARD(tlog_node_hash(sr, proof[i], sr));
		}
		fn >>= 1;
		sn >>= 1;
	}
	KMS_ENSURE(sn == 0, KMS_INVALID_CIPHERTEXT,
	           WHERE ": consistency proof: %zu hashes is too few", n);
	KMS_ENSURE(tlog_hash_equal(fr, old_root) && tlog_hash_equal(sr, new_root),
	           KMS_INVALID_CIPHERTEXT,
	           WHERE ": consistency proof from size %llu to %llu does not lead to the roots",
	           (unsigned long long)old_size, (unsigned long long)new_size);
	return KMS_OK;
}

/* ---- tlog_tree ---- */

void tlog_tree_init(tlog_tree *tree)
{
	memset(tree, 0, sizeof *tree);
}

void tlog_tree_free(tlog_tree *tree)
{
	for (unsigned l = 0; l < TLOG_TREE_LEVELS; l++)
		free(tree->levels[l].hashes);
	memset(tree, 0, sizeof *tree);
}

#define TREE_LEVEL_MIN_CAP 256

/* Room for one more hash at this level. */
static kms_status level_reserve(tlog_tree_level *level)
{
	if (level->len < level->cap)
		return KMS_OK;
	uint64_t cap = level->cap ? level->cap * 2 : TREE_LEVEL_MIN_CAP;
	KMS_ENSURE(cap > level->cap && cap <= SIZE_MAX / TLOG_HASH_SIZE, KMS_INTERNAL,
	           WHERE ": tree level of %llu hashes cannot grow", (unsigned long long)level->len);
	void *grown = realloc(level->hashes, (size_t)cap * TLOG_HASH_SIZE);
	KMS_ENSURE(grown != NULL, KMS_INTERNAL, WHERE ": out of memory growing a tree level to %llu hashes",
	           (unsigned long long)cap);
	level->hashes = grown;
	level->cap = cap;
	return KMS_OK;
}

kms_status tlog_tree_append(tlog_tree *tree, const uint8_t leaf_hash[static TLOG_HASH_SIZE])
{
	KMS_ENSURE(tree->size < TLOG_TREE_SIZE_MAX, KMS_INVALID_ARGUMENT,
	           WHERE ": tree is full (%llu leaves)", (unsigned long long)tree->size);
	/* Leaf i completes one new subtree per trailing one bit of i: compute
	 * them all and make room first, so that a failure changes nothing. */
	uint64_t index = tree->size;
	uint8_t fresh[TLOG_TREE_LEVELS][TLOG_HASH_SIZE];
	unsigned levels = 1;

	memcpy(fresh[0], leaf_hash, TLOG_HASH_SIZE);
	for (uint64_t i = index; (i & 1) && levels < TLOG_TREE_LEVELS; i >>= 1, levels++) {
		const tlog_tree_level *below = &tree->levels[levels - 1];
		KMS_GUARD(tlog_node_hash(below->hashes[below->len - 1], fresh[levels - 1],
		                         fresh[levels]));
	}
	for (unsigned l = 0; l < levels; l++)
		KMS_GUARD(level_reserve(&tree->levels[l]));
	for (unsigned l = 0; l < levels; l++) {
		tlog_tree_level *level = &tree->levels[l];
		memcpy(level->hashes[level->len++], fresh[l], TLOG_HASH_SIZE);
	}
	tree->size++;
	return KMS_OK;
}

kms_status tlog_tree_append_entry(tlog_tree *tree, const uint8_t *entry, size_t len)
{
	uint8_t leaf[TLOG_HASH_SIZE];
	KMS_GUARD(tlog_leaf_hash(entry, len, leaf));
	return tlog_tree_append(tree, leaf);
}

kms_status tlog_tree_reader(void *ctx, unsigned level, uint64_t index,
                            uint8_t out[static TLOG_HASH_SIZE])
{
	const tlog_tree *tree = ctx;
	KMS_ENSURE(level < TLOG_TREE_LEVELS && index < tree->levels[level].len, KMS_NOT_FOUND,
	           WHERE ": tree of %llu leaves has no subtree %llu at level %u",
	           (unsigned long long)tree->size, (unsigned long long)index, level);
	memcpy(out, tree->levels[level].hashes[index], TLOG_HASH_SIZE);
	return KMS_OK;
}

kms_status tlog_tree_root(const tlog_tree *tree, uint64_t size, uint8_t out[static TLOG_HASH_SIZE])
{
	KMS_ENSURE(size <= tree->size, KMS_INVALID_ARGUMENT,
	           WHERE ": root at size %llu of a tree of %llu", (unsigned long long)size,
	           (unsigned long long)tree->size);
	/* The reader only reads; its ctx is not const because other readers
	 * (a store with a cache) may need to write. */
	return tlog_root_at(tlog_tree_reader, (void *)tree, size, out);
}
