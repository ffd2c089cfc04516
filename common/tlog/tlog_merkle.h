/*
 * tlog_merkle.h: RFC 6962 Merkle tree hashing, proofs and an in-memory tree.
 *
 *   leaf hash   SHA-256(0x00 || entry)
 *   node hash   SHA-256(0x01 || left || right)
 *   empty tree  SHA-256("")
 *
 * MTH(D[n]) is RFC 6962 section 2.1's Merkle Tree Hash: for n > 1, with k
 * the largest power of two below n, MTH = node(MTH(D[0:k]), MTH(D[k:n])).
 * Inclusion and consistency proofs are RFC 6962 section 2.1.1/2.1.2 PATH
 * and PROOF, verified with the algorithms of RFC 9162 sections 2.1.3.2 and
 * 2.1.4.2. This is the hashing C2SP tlog-tiles uses; docs/audit-log.md.
 *
 * Stored hashes are read through a tlog_hash_reader: the hash of the
 * complete subtree of 2^level leaves starting at leaf index << level. A
 * tlog_tree keeps every such hash in memory and is itself a reader; kmsd
 * keeps one, and tlog_tiles.h reads tiles through the same interface.
 *
 * Status codes: KMS_INVALID_ARGUMENT for arguments out of range (a caller's
 * bug), KMS_INVALID_CIPHERTEXT when a proof does not verify (the data does
 * not authenticate), KMS_INTERNAL when OpenSSL or malloc fails. Nothing here
 * blocks or keeps global state; a tlog_tree is not thread-safe (one writer,
 * or a lock around it).
 */
#ifndef KMS_TLOG_MERKLE_H
#define KMS_TLOG_MERKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

#define TLOG_HASH_SIZE 32         /* SHA-256 */
#define TLOG_LEAF_PREFIX 0x00     /* RFC 6962 2.1: leaf hash domain */
#define TLOG_NODE_PREFIX 0x01     /* RFC 6962 2.1: interior node domain */

/* Tree sizes stop at 2^63 so that no size or index arithmetic overflows. */
#define TLOG_TREE_SIZE_MAX (UINT64_C(1) << 63)
/* Levels 0..63: the height of a tree of TLOG_TREE_SIZE_MAX leaves is 63. */
#define TLOG_TREE_LEVELS 64
/* The longest proof for a tree of at most TLOG_TREE_SIZE_MAX leaves: an
 * inclusion proof has at most 63 hashes, a consistency proof at most 64. */
#define TLOG_PROOF_MAX_HASHES 64

/* SHA-256(""), the root of the empty tree. */
void tlog_empty_root(uint8_t out[static TLOG_HASH_SIZE]);

/* SHA-256(0x00 || entry[0..len)). entry may be NULL when len is 0. */
kms_status tlog_leaf_hash(const uint8_t *entry, size_t len,
                          uint8_t out[static TLOG_HASH_SIZE]) KMS_MUST_USE;

/* SHA-256(0x01 || left || right). out may be left or right. */
kms_status tlog_node_hash(const uint8_t left[static TLOG_HASH_SIZE],
                          const uint8_t right[static TLOG_HASH_SIZE],
                          uint8_t out[static TLOG_HASH_SIZE]) KMS_MUST_USE;

/* MTH over n leaf hashes (n = 0: the empty root), in O(n) hashes and
 * O(log n) memory. */
kms_status tlog_root(const uint8_t (*leaf_hashes)[TLOG_HASH_SIZE], uint64_t n,
                     uint8_t out[static TLOG_HASH_SIZE]) KMS_MUST_USE;

/* Writes the hash of the complete subtree of 2^level leaves starting at
 * leaf (index << level). The functions below only ask for subtrees that
 * lie inside the tree they were given a size for. A reader reports its own
 * failures (KMS_FAIL) and returns their status, which is passed on. */
typedef kms_status (*tlog_hash_reader)(void *ctx, unsigned level, uint64_t index,
                                       uint8_t out[static TLOG_HASH_SIZE]);

/* MTH of the first tree_size leaves, from O(log n) stored hashes. */
kms_status tlog_root_at(tlog_hash_reader read, void *ctx, uint64_t tree_size,
                        uint8_t out[static TLOG_HASH_SIZE]) KMS_MUST_USE;

/* PATH(index, D[tree_size]): the inclusion proof of leaf index, leaf side
 * first, in O(log n) reads. *n is the number of hashes written to proof;
 * 0 on failure. index < tree_size <= TLOG_TREE_SIZE_MAX. */
kms_status tlog_inclusion_proof(tlog_hash_reader read, void *ctx, uint64_t tree_size,
                                uint64_t index,
                                uint8_t proof[static TLOG_PROOF_MAX_HASHES][TLOG_HASH_SIZE],
                                size_t *n) KMS_MUST_USE;

/* PROOF(old_size, D[new_size]): the consistency proof, in O(log n) reads.
 * Empty when old_size is 0 or equal to new_size. old_size <= new_size. */
kms_status tlog_consistency_proof(tlog_hash_reader read, void *ctx, uint64_t old_size,
                                  uint64_t new_size,
                                  uint8_t proof[static TLOG_PROOF_MAX_HASHES][TLOG_HASH_SIZE],
                                  size_t *n) KMS_MUST_USE;

/* Whether two hashes are equal, in constant time (they are public, so
 * this costs nothing and rules out a class of mistakes). */
bool tlog_hash_equal(const uint8_t a[static TLOG_HASH_SIZE],
                     const uint8_t b[static TLOG_HASH_SIZE]);

/* The root that proof[0..n) and leaf_hash give for leaf index of a tree of
 * tree_size leaves: RFC 9162 2.1.3.2 up to, not including, the comparison
 * with a root. For a tree whose root is not known yet: the root is only
 * what the proof claims until something else (a consistency proof to a
 * signed root) confirms it. KMS_INVALID_CIPHERTEXT when index is not in the
 * tree or the proof has the wrong number of hashes. */
kms_status tlog_inclusion_root(const uint8_t leaf_hash[static TLOG_HASH_SIZE], uint64_t index,
                               uint64_t tree_size, const uint8_t (*proof)[TLOG_HASH_SIZE],
                               size_t n, uint8_t root[static TLOG_HASH_SIZE]) KMS_MUST_USE;

/* KMS_OK when proof[0..n) proves leaf_hash is leaf index of the tree of
 * tree_size leaves with that root (RFC 9162 2.1.3.2); otherwise
 * KMS_INVALID_CIPHERTEXT. */
kms_status tlog_inclusion_verify(const uint8_t leaf_hash[static TLOG_HASH_SIZE], uint64_t index,
                                 uint64_t tree_size,
                                 const uint8_t (*proof)[TLOG_HASH_SIZE], size_t n,
                                 const uint8_t root[static TLOG_HASH_SIZE]) KMS_MUST_USE;

/* KMS_OK when proof[0..n) proves the tree (old_size, old_root) is a prefix
 * of (new_size, new_root) (RFC 9162 2.1.4.2); otherwise
 * KMS_INVALID_CIPHERTEXT. The trivial cases need an empty proof: old_size
 * 0 (old_root must then be the empty root) and old_size == new_size (the
 * roots must be equal). */
kms_status tlog_consistency_verify(uint64_t old_size, uint64_t new_size,
                                   const uint8_t old_root[static TLOG_HASH_SIZE],
                                   const uint8_t new_root[static TLOG_HASH_SIZE],
                                   const uint8_t (*proof)[TLOG_HASH_SIZE], size_t n) KMS_MUST_USE;

/*
 * tlog_tree: an append-only tree in memory that keeps the hash of every
 * complete subtree, level by level (2n hashes for n leaves: 64 bytes a
 * leaf), so roots at any size up to the current one and proofs are
 * O(log n). Treat the fields as private.
 */
typedef struct tlog_tree_level {
	uint8_t (*hashes)[TLOG_HASH_SIZE];
	uint64_t len; /* == tree size >> level */
	uint64_t cap;
} tlog_tree_level;

typedef struct tlog_tree {
	uint64_t size;
	tlog_tree_level levels[TLOG_TREE_LEVELS];
} tlog_tree;

/* An empty tree; owns nothing until the first append. */
void tlog_tree_init(tlog_tree *tree);

/* Frees the hashes; the tree is empty again afterwards. */
void tlog_tree_free(tlog_tree *tree);

/* Appends one leaf hash. All or nothing: on failure the tree is unchanged. */
kms_status tlog_tree_append(tlog_tree *tree,
                            const uint8_t leaf_hash[static TLOG_HASH_SIZE]) KMS_MUST_USE;

/* tlog_leaf_hash then tlog_tree_append. */
kms_status tlog_tree_append_entry(tlog_tree *tree, const uint8_t *entry,
                                  size_t len) KMS_MUST_USE;

static inline uint64_t tlog_tree_size(const tlog_tree *tree)
{
	return tree->size;
}

/* The root at any size 0..tlog_tree_size(tree). */
kms_status tlog_tree_root(const tlog_tree *tree, uint64_t size,
                          uint8_t out[static TLOG_HASH_SIZE]) KMS_MUST_USE;

/* A tlog_hash_reader over a tlog_tree (ctx is the tree, read only):
 * KMS_NOT_FOUND for a subtree the tree does not have yet. */
kms_status tlog_tree_reader(void *ctx, unsigned level, uint64_t index,
                            uint8_t out[static TLOG_HASH_SIZE]) KMS_MUST_USE;

#endif
