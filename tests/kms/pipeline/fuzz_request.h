/*
 * fuzz_request.h: the request-path fuzz target (fuzz_request.c) and its
 * replay driver (fuzz_request_replay.c).
 *
 * The target is built twice: with clang as a real libFuzzer binary
 * (-fsanitize=fuzzer), and always as fuzz_request_replay, a plain main()
 * that feeds it built-in seeds (a valid request of every operation),
 * corpus files and their truncations and byte flips, so every ctest lane
 * runs it.
 */
#ifndef KMS_TESTS_FUZZ_REQUEST_H
#define KMS_TESTS_FUZZ_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What the last input did: for the replay driver's own checks. */
typedef enum fuzz_request_outcome {
	FUZZ_REQ_TOO_LARGE,
	FUZZ_REQ_REFUSED,  /* not a kms.Request, or a bad envelope or operation */
	FUZZ_REQ_INVALID,  /* the operation's fields were refused */
	FUZZ_REQ_VALID,
} fuzz_request_outcome;

extern fuzz_request_outcome fuzz_request_last;

/* A broken invariant is a crash: libFuzzer saves the input, replay fails. */
#define FUZZ_CHECK(cond)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: invariant failed: %s\n",       \
			        __FILE__, __LINE__, #cond);                    \
			abort();                                               \
		}                                                              \
	} while (0)

#endif
